//! `lipsync live --audio-out pulse:SINK` against a real PulseAudio server the test starts, with a null sink
//! as the virtual microphone. Speech comes in over RTP in a burst; the test records the sink's monitor on
//! the system's monotonic clock (the clock `live` runs on) and finds where the speech is heard: at its
//! running time plus the latency, as its frames leave for the virtual camera, within one frame.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gst::prelude::*;
use lipsync::io::decode_audio;

const FRAME_MS: f64 = 40.0;

/// A PulseAudio server of its own (a private socket, no other clients), with a null sink
/// `lipsync_mic`; stopped when dropped.
struct PulseServer {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl PulseServer {
    fn start() -> Self {
        // One folder per server: the tests of this file run at once, each with its own.
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lipsync-pulse-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("native");
        let child = Command::new("pulseaudio")
            .args(["-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes", "--use-pid-file=no"])
            .arg("-L")
            .arg(format!("module-native-protocol-unix auth-anonymous=1 socket={}", socket.display()))
            .args(["-L", "module-null-sink sink_name=lipsync_mic rate=48000 channels=1"])
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio: install it (scripts/setup.sh installs pulseaudio)");
        let server = PulseServer { child, dir, socket };
        for _ in 0..100 {
            if server.socket.exists() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pulseaudio did not open {} within 5 s", server.socket.display());
    }

    fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Records a source at 16 kHz mono, each buffer placed by its time on the system's monotonic clock.
struct Recorder {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Recorder {
    fn start(server: &str, device: &str) -> Self {
        lipsync::io::init().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "pulsesrc server={server} device={device} ! audioconvert ! \
             audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! appsink name=sink sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        Recorder { pipeline, sink }
    }

    /// Everything recorded, contiguous: the samples and, for each buffer, its first sample's index and
    /// monotonic time (ns).
    fn stop(self) -> (Vec<f32>, Vec<(usize, u64)>) {
        let base = self.pipeline.base_time().unwrap().nseconds();
        let (mut samples, mut times) = (Vec::new(), Vec::new());
        self.pipeline.send_event(gst::event::Eos::new());
        while let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            let buffer = sample.buffer().unwrap();
            let segment = sample.segment().unwrap().downcast_ref::<gst::ClockTime>().unwrap();
            times.push((samples.len(), base + segment.to_running_time(buffer.pts().unwrap()).unwrap().nseconds()));
            let map = buffer.map_readable().unwrap();
            samples.extend(map.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())));
        }
        self.pipeline.set_state(gst::State::Null).unwrap();
        assert!(!times.is_empty(), "the recorder got nothing from the monitor");
        (samples, times)
    }
}

/// The monotonic time (ms) of recorded sample `index`, by the buffer that holds it.
fn time_of(times: &[(usize, u64)], index: usize) -> f64 {
    let &(first, at) = times.iter().rev().find(|(first, _)| *first <= index).unwrap_or(&times[0]);
    at as f64 / 1e6 + (index as f64 - first as f64) / 16.0
}

/// The lag (in samples) at which `needle` best matches `hay`, and the normalised correlation there.
fn best_lag(hay: &[f32], needle: &[f32]) -> (usize, f64) {
    let energy = |s: &[f32]| s.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt().max(1e-9);
    let norm = energy(needle);
    let score = |lag: usize| {
        let window = &hay[lag..lag + needle.len()];
        let dot: f64 = window.iter().zip(needle).map(|(&a, &b)| a as f64 * b as f64).sum();
        (lag, dot / (norm * energy(window)))
    };
    let best = |lags: &mut dyn Iterator<Item = usize>| lags.map(score).max_by(|a, b| a.1.total_cmp(&b.1));
    let last = hay.len().checked_sub(needle.len()).expect("a recording longer than the speech");
    // Every fourth lag, then refined around the best to the sample.
    let (coarse, _) = best(&mut (0..last).step_by(4)).expect("a recording longer than the speech");
    best(&mut (coarse.saturating_sub(4)..=(coarse + 4).min(last))).expect("lags around the coarse best")
}

/// The number after `key` on the line of `log` that has it.
fn number_after(log: &str, key: &str) -> f64 {
    let rest = &log[log.find(key).unwrap_or_else(|| panic!("no `{key}` in the log:\n{log}")) + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after `{key}` in the log:\n{log}"))
}

#[test]
fn the_virtual_microphone_plays_the_voice_in_sync_with_the_camera() {
    let pulse = PulseServer::start();
    let recorder = Recorder::start(&pulse.address(), "lipsync_mic.monitor");
    let speech = decode_audio(&common::shared("media/education_9s_16k.wav")).unwrap()[..5 * 16_000].to_vec();
    let port = 20000 + (std::process::id() % 20000) as u16 + 23;
    let out = std::env::temp_dir().join(format!("lipsync-virtual-mic-{}.mkv", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_lipsync"))
        .args(["live", "--face", "test", "--duration", "9", "--audio-gaps", "silence"])
        .args(["--audio", &format!("rtp://127.0.0.1:{port}?codec=l16&burst=1")])
        .args(["--audio-out", "pulse:lipsync_mic", "--out"])
        .arg(&out)
        .env("PULSE_SERVER", pulse.address())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log, read as it comes: the speech is sent once the session runs (waking the sink takes a while).
    let (lines, log_lines) = std::sync::mpsc::channel::<String>();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        stderr.lines().map_while(|l| l.ok()).for_each(|l| lines.send(l).unwrap_or(()));
    });
    let mut log: Vec<String> = Vec::new();
    while let Ok(line) = log_lines.recv_timeout(Duration::from_secs(30)) {
        let started = line.starts_with("video:");
        log.push(line);
        if started {
            break;
        }
    }
    let (sender, src) = common::rtp_speech_sender(port);
    std::thread::sleep(Duration::from_millis(500));
    // A TTS's burst: the 5 s in half a second.
    for (k, piece) in speech.chunks(1600).enumerate() {
        let bytes: Vec<u8> = piece.iter().flat_map(|v| ((v * 32767.0) as i16).to_be_bytes()).collect();
        let mut b = gst::Buffer::from_mut_slice(bytes);
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(100 * k as u64));
        src.push_buffer(b).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    sender.set_state(gst::State::Null).unwrap();
    let (recorded, times) = recorder.stop();
    reader.join().unwrap();
    log.extend(log_lines.try_iter());
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    let _ = std::fs::remove_file(&out);

    // Where the speech should be heard: its first sample's running time (the playback report), plus the
    // latency, on the clock `live` reports.
    let base = number_after(&log, "clock: running time 0 is");
    let latency_ms = number_after(&log, ", latency");
    let started_ms = number_after(&log, "playback: started 0");
    let due = base / 1e6 + started_ms + latency_ms;
    let (lag, similarity) = best_lag(&recorded, &speech);
    let heard = time_of(&times, lag);
    let late_video_ms = number_after(&log, "frames left at most");
    let audio_ms = heard - due;
    eprintln!(
        "voice heard {audio_ms:+.1} ms from its time (similarity {similarity:.3}); frames out up to {late_video_ms:.1} ms \
         after theirs\n{log}"
    );
    assert!(similarity > 0.9, "the monitor does not hold the speech sent (similarity {similarity:.3})");
    // The speech's first sample and the frame of its time (which leaves between its time and
    // `late_video_ms` after it) reach the call application within a frame of each other.
    let worst = audio_ms.abs().max((audio_ms - late_video_ms).abs());
    assert!(
        worst <= FRAME_MS,
        "the voice is {audio_ms:+.1} ms from its frame's time (frames up to {late_video_ms:.1} ms late)"
    );
}

/// A sink that is not there, or no server: `live` stops at once with an error that says what to check.
#[test]
fn a_missing_sink_or_server_is_a_clear_error() {
    let pulse = PulseServer::start();
    let missing_server = format!("unix:{}", pulse.dir.join("nothing-here").display());
    for (server, sink) in [(pulse.address(), "pulse:no_such_sink"), (missing_server, "pulse")] {
        let output = Command::new(env!("CARGO_BIN_EXE_lipsync"))
            .args(["live", "--face", "test", "--duration", "5", "--audio", "rtp://127.0.0.1:9?codec=l16"])
            .args(["--audio-out", sink, "--out", "/dev/null.mkv"])
            .env("PULSE_SERVER", &server)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{sink} on {server}: {log}");
        assert!(log.contains(&format!("--audio-out {sink}")) && log.contains("pactl list short sinks"), "{log}");
    }
}
