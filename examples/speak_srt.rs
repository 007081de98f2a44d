//! A stand-in for a live translation service: speaks each line of a subtitle file (SRT) with eSpeak NG
//! when it comes due and sends the speech over RTP (L16, the TTS's own rate) ten times faster than it
//! plays, the way a service streams a line as its TTS makes it. Each line's RTP time is when it should play: its start
//! in the subtitles, or, when the line before is still speaking, right after it, so a line that runs
//! longer than its slot queues and is never cut.
//!
//! ```sh
//! lipsync live --face face.mp4 --loop --audio 'rtp://127.0.0.1:5004?codec=l16&rate=22050&burst=1' \
//!     --audio-gaps silence --out dubbed.mkv &
//! cargo run --release --example speak_srt -- --srt lines.fr.srt --voice fr --to 127.0.0.1:5004
//! ```
//!
//! eSpeak NG runs as a separate program (`espeak-ng --stdout`); nothing of it is linked in. A real chain
//! (speech recognition, machine translation, a neural TTS) replaces this program: send each line's audio
//! the same way.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// One subtitle: when it is due (from the start) and what is said.
struct Cue {
    start: Duration,
    text: String,
}

/// The cues of an SRT file: blocks of an index line, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, and text lines.
fn parse_srt(srt: &str) -> Result<Vec<Cue>, String> {
    let time = |t: &str| -> Result<Duration, String> {
        let t = t.trim().replace(',', ".");
        let parts: Vec<&str> = t.split(':').collect();
        let [h, m, s] = parts[..] else { return Err(format!("`{t}` is not HH:MM:SS,mmm")) };
        let bad = |_| format!("`{t}` is not HH:MM:SS,mmm");
        let secs = h.parse::<f64>().map_err(bad)? * 3600.0
            + m.parse::<f64>().map_err(bad)? * 60.0
            + s.parse::<f64>().map_err(bad)?;
        Ok(Duration::from_secs_f64(secs))
    };
    let mut cues = Vec::new();
    for block in srt.replace("\r\n", "\n").split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        let mut lines = block.lines();
        let timing = lines.find(|l| l.contains("-->")).ok_or_else(|| format!("no timing line in `{block}`"))?;
        let (start, _end) = timing.split_once("-->").expect("checked");
        let text = lines.collect::<Vec<_>>().join(" ");
        cues.push(Cue { start: time(start)?, text });
    }
    cues.sort_by_key(|c| c.start);
    Ok(cues)
}

/// `text` spoken by eSpeak NG's `voice`: 16-bit mono samples and their rate.
fn speak(voice: &str, text: &str) -> Result<(Vec<u8>, u32), String> {
    let mut child = Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("espeak-ng: {e} (Debian: apt-get install espeak-ng)"))?;
    let mut wav = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut wav).map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    // A WAV header of 44 bytes (written for a stream: its sizes are not filled in), then the samples.
    if wav.len() < 44 || &wav[..4] != b"RIFF" || u16::from_le_bytes([wav[22], wav[23]]) != 1 {
        return Err(format!("espeak-ng -v {voice} gave no mono WAV"));
    }
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    Ok((wav[44..].to_vec(), rate))
}

struct Args {
    srt: String,
    voice: String,
    to: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args { srt: String::new(), voice: "en".into(), to: "127.0.0.1:5004".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--srt" => a.srt = value()?,
            "--voice" => a.voice = value()?,
            "--to" => a.to = value()?,
            other => return Err(format!("unknown argument `{other}`: --srt FILE [--voice V] [--to HOST:PORT]")),
        }
    }
    if a.srt.is_empty() {
        return Err("--srt FILE is needed".into());
    }
    Ok(a)
}

fn main() -> Result<(), String> {
    let args = args()?;
    let srt = std::fs::read_to_string(&args.srt).map_err(|e| format!("{}: {e}", args.srt))?;
    let cues = parse_srt(&srt)?;
    gst::init().map_err(|e| e.to_string())?;
    let (host, port) = args.to.rsplit_once(':').ok_or("--to is HOST:PORT")?;
    let rate = speak(&args.voice, "")?.1;
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=audio/x-raw,format=S16LE,rate={rate},channels=1,layout=interleaved ! \
         audioconvert ! rtpL16pay ! udpsink host={host} port={port} sync=false"
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let src = pipeline.by_name("src").expect("named").downcast::<gst_app::AppSrc>().expect("an appsrc");
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let started = Instant::now();
    // The RTP time at which the speech sent so far ends.
    let mut speech_end = Duration::ZERO;
    for (i, cue) in cues.iter().enumerate() {
        if let Some(wait) = cue.start.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let (samples, _) = speak(&args.voice, &cue.text)?;
        let length = Duration::from_secs_f64(samples.len() as f64 / 2.0 / rate as f64);
        let at = cue.start.max(speech_end);
        let queued = at - cue.start;
        eprintln!(
            "line {}: due {:.2} s, {:.2} s of speech, plays from {:.2} s{}: {}",
            i + 1,
            cue.start.as_secs_f64(),
            length.as_secs_f64(),
            at.as_secs_f64(),
            if queued.is_zero() { String::new() } else { format!(" (queued {:.2} s)", queued.as_secs_f64()) },
            cue.text
        );
        // Ten times faster than real time, as a streaming TTS makes it: 100 ms pieces 10 ms apart.
        let piece = (rate / 10) as usize * 2;
        for (k, bytes) in samples.chunks(piece).enumerate() {
            let mut buffer = gst::Buffer::from_slice(bytes.to_vec());
            let b = buffer.get_mut().expect("new");
            b.set_pts(gst::ClockTime::from_nseconds((at + Duration::from_millis(100 * k as u64)).as_nanos() as u64));
            if k == 0 {
                // The payloader takes the timestamp at a discontinuity (a pause between lines), else
                // counts on.
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            src.push_buffer(buffer).map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(10));
        }
        speech_end = at + length;
    }
    // Until the last line has played out at the receiver.
    if let Some(wait) = speech_end.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
    let _ = src.end_of_stream();
    pipeline.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subtitles() {
        let cues = parse_srt(
            "1\n00:00:01,500 --> 00:00:03,000\nBonjour\nà tous\n\n2\r\n00:01:00,000 --> 00:01:02,000\r\nAu revoir\r\n",
        )
        .unwrap();
        assert_eq!(cues.len(), 2);
        assert_eq!((cues[0].start, cues[0].text.as_str()), (Duration::from_millis(1500), "Bonjour à tous"));
        assert_eq!((cues[1].start, cues[1].text.as_str()), (Duration::from_secs(60), "Au revoir"));
        assert!(parse_srt("1\n00:00:xx,000 --> 00:00:01,000\nhi").is_err());
    }
}
