//! RTP audio over a bad network: packets lost, reordered and duplicated on loopback. The jitter buffer
//! reports what it gives up on and the receiver conceals it (Opus by its decoder's loss concealment, L16
//! by silence), so a live session with 10 % loss has about as many complete audio windows and frames on
//! time as one over a clean network.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use gst::prelude::*;

/// Sends a live 300 Hz tone as RTP (`payloader`: the chain from 16 kHz mono audio to RTP packets) to
/// `port`; when `impaired`, every tenth packet is lost, every ninth is sent after the one behind it, and
/// every eleventh twice. Until `stop` is set.
fn send(port: u16, payloader: &str, impaired: bool, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    lipsync::io::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine freq=300 ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! \
         {payloader} ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = ("127.0.0.1", port);
        let mut held: Option<Vec<u8>> = None;
        let mut index = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else { continue };
            let packet = sample.buffer().unwrap().map_readable().unwrap().to_vec();
            index += 1;
            if !impaired {
                socket.send_to(&packet, target).unwrap();
                continue;
            }
            if index % 10 == 3 {
                continue;
            }
            if index % 9 == 5 {
                held = Some(packet);
                continue;
            }
            socket.send_to(&packet, target).unwrap();
            if index % 11 == 7 {
                socket.send_to(&packet, target).unwrap();
            }
            if let Some(late) = held.take() {
                socket.send_to(&late, target).unwrap();
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
    })
}

/// What a live session's summary says: frames, late frames, audio windows with missing samples.
#[derive(Debug)]
struct Session {
    frames: u64,
    late: u64,
    underruns: u64,
}

fn number_before(log: &str, words: &str) -> u64 {
    let at = log.find(words).unwrap_or_else(|| panic!("no `{words}` in:\n{log}"));
    let digits: String = log[..at].chars().rev().take_while(|c| c.is_ascii_digit()).collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

fn number_after(log: &str, words: &str) -> u64 {
    let at = log.find(words).unwrap_or_else(|| panic!("no `{words}` in:\n{log}")) + words.len();
    log[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

/// A 4 s live session with RTP audio sent as [`send`] does.
fn session(codec: &str, payloader: &str, impaired: bool, port: u16) -> Session {
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send(port, payloader, impaired, stop.clone());
    let out: PathBuf = std::env::temp_dir().join(format!("lipsync-rtp-loss-{}-{codec}.mkv", std::process::id()));
    let result = Command::new(env!("CARGO_BIN_EXE_lipsync"))
        .args(["live", "--camera", "test", "--audio", &format!("rtp://127.0.0.1:{port}?codec={codec}")])
        .arg("--out")
        .arg(&out)
        .args(["--duration", "4"])
        .output()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let _ = std::fs::remove_file(&out);
    let log = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "live failed:\n{log}");
    Session {
        frames: number_before(&log, " frames in"),
        late: number_before(&log, " late,"),
        underruns: number_after(&log, "audio underruns "),
    }
}

#[test]
fn ten_percent_loss_with_reordering_and_duplicates_costs_no_audio_and_no_late_frames() {
    let port = 21000 + (std::process::id() % 20000) as u16;
    for (codec, payloader) in [("l16", "rtpL16pay"), ("opus", "opusenc ! rtpopuspay")] {
        let clean = session(codec, payloader, false, port);
        let lossy = session(codec, payloader, true, port);
        eprintln!("{codec}: clean {clean:?}, 10 % loss {lossy:?}");
        let frames = lossy.frames as f64;
        assert!(
            lossy.underruns as f64 <= clean.underruns as f64 + 0.05 * frames,
            "{codec}: windows missing audio rose from {} to {} of {} frames",
            clean.underruns,
            lossy.underruns,
            lossy.frames
        );
        assert!(
            lossy.late as f64 <= clean.late as f64 + 0.02 * frames,
            "{codec}: late frames rose from {} to {} of {} frames",
            clean.late,
            lossy.late,
            lossy.frames
        );
    }
}
