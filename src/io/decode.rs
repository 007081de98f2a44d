//! Decoding files: any audio GStreamer reads, to 16 kHz mono f32; face videos and still images to frames
//! at 25 fps.
//!
//! Every decode watches its pipeline's bus while it pulls: a file GStreamer cannot read, a corrupt one, or
//! one without a stream of the kind needed ends the decode at once with an error that names the file and
//! says what is wrong with it, instead of waiting for samples that never come.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;

use super::{by_name, frame_from_sample, launch};
use crate::error::{Error, Result};
use crate::frame::VideoFrame;

/// Frame rate of decoded face videos and of `dub`'s output (STSA works at 25 fps).
pub const FPS: u32 = 25;

const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff"];

/// How long a pull waits for a sample before it looks at the bus again.
const POLL: gst::ClockTime = gst::ClockTime::from_mseconds(50);

/// Whether `path` names a still image (by its extension).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The kind of stream a decode needs from its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// A running `filesrc ! decodebin ! <branch> ! appsink` pipeline, pulled while its bus is watched.
struct Decoding {
    path: PathBuf,
    kind: Kind,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// Set once the decoder has exposed all its streams and none of them reached the branch.
    no_stream: Arc<AtomicBool>,
}

impl Decoding {
    /// Starts decoding `path` into `branch`, which begins with an element named `convert` and ends in an
    /// appsink named `sink`.
    fn start(path: &Path, kind: Kind, branch: &str) -> Result<Self> {
        std::fs::metadata(path).map_err(super::io_error(path))?;
        if path.is_dir() {
            return Err(Error::InvalidArgument(format!("{} is a folder, not a media file", path.display())));
        }
        let pipeline = launch(&format!("filesrc name=src ! decodebin name=decoder ! {branch}"))?;
        by_name::<gst::Element>(&pipeline, "src")?.set_property("location", path);
        let sink: gst_app::AppSink = by_name(&pipeline, "sink")?;
        let convert = by_name::<gst::Element>(&pipeline, "convert")?.downgrade();
        let no_stream = Arc::new(AtomicBool::new(false));
        let flag = no_stream.clone();
        // decodebin links its pads to the branch as it exposes them (`pad-added`), all before it says it has
        // no more: by then an unlinked branch means the file has no stream of this kind.
        by_name::<gst::Element>(&pipeline, "decoder")?.connect_no_more_pads(move |_| {
            let linked = convert.upgrade().and_then(|c| c.static_pad("sink")).is_some_and(|p| p.is_linked());
            if !linked {
                flag.store(true, Ordering::Release);
            }
        });
        let decoding = Decoding { path: path.to_owned(), kind, pipeline, sink, no_stream };
        if decoding.pipeline.set_state(gst::State::Playing).is_err() {
            let bus = decoding.pipeline.bus().expect("pipelines have a bus");
            return Err(match bus.pop_filtered(&[gst::MessageType::Error]) {
                Some(msg) => decoding.error_message(&msg),
                None => decoding.failed("cannot be opened for decoding".into()),
            });
        }
        Ok(decoding)
    }

    /// Hands every sample to `each` until the stream ends or `each` says it has enough (`false`).
    fn pull(&self, mut each: impl FnMut(&gst::Sample) -> Result<bool>) -> Result<()> {
        let bus = self.pipeline.bus().expect("pipelines have a bus");
        loop {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                return Err(self.error_message(&msg));
            }
            if self.no_stream.load(Ordering::Acquire) {
                return Err(self.missing_stream());
            }
            match self.sink.try_pull_sample(POLL) {
                Some(sample) if !each(&sample)? => return Ok(()),
                Some(_) => {}
                None if self.sink.is_eos() => {
                    // An error posted just before the end still counts.
                    return match bus.pop_filtered(&[gst::MessageType::Error]) {
                        Some(msg) => Err(self.error_message(&msg)),
                        None => Ok(()),
                    };
                }
                None => {}
            }
        }
    }

    /// The next sample, `None` at the end of the stream.
    fn next_sample(&self) -> Result<Option<gst::Sample>> {
        let mut next = None;
        self.pull(|sample| {
            next = Some(sample.clone());
            Ok(false)
        })?;
        Ok(next)
    }

    fn missing_stream(&self) -> Error {
        let hint = match self.kind {
            Kind::Audio => "give a file with speech in it (for `measure`, --audio takes the speech from another file)",
            Kind::Video => "give a video or a photo of a face",
        };
        Error::Media(format!("{}: has no {} stream: {hint}", self.path.display(), self.kind.name()))
    }

    fn failed(&self, why: String) -> Error {
        Error::Media(format!("{}: {why}", self.path.display()))
    }

    /// The error a bus message reports, said in terms of the file.
    fn error_message(&self, msg: &gst::Message) -> Error {
        let gst::MessageView::Error(e) = msg.view() else {
            return self.failed("cannot be decoded".into());
        };
        if self.no_stream.load(Ordering::Acquire) {
            return self.missing_stream();
        }
        let error = e.error();
        let what = if let Some(kind) = error.kind::<gst::StreamError>() {
            match kind {
                gst::StreamError::TypeNotFound | gst::StreamError::WrongType => {
                    "is not a media file GStreamer can read (it is empty, text, or in a format no installed plugin \
                     knows)"
                }
                gst::StreamError::CodecNotFound => "uses a codec no installed GStreamer plugin decodes",
                gst::StreamError::Demux | gst::StreamError::Decode | gst::StreamError::Format => {
                    "is corrupt or cut short and cannot be decoded"
                }
                _ => "cannot be decoded",
            }
        } else if error.matches(gst::CoreError::MissingPlugin) {
            "needs a GStreamer plugin that is not installed"
        } else if let Some(kind) = error.kind::<gst::ResourceError>() {
            match kind {
                gst::ResourceError::NotFound => "does not exist",
                gst::ResourceError::OpenRead | gst::ResourceError::Read => "cannot be read",
                _ => "cannot be decoded",
            }
        } else {
            "cannot be decoded"
        };
        self.failed(format!("{what} ({})", error.message()))
    }
}

impl Drop for Decoding {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Decodes the whole audio track of `path` to 16 kHz mono f32.
///
/// Fails, naming the file, when it cannot be decoded, has no audio stream or holds no audio, and when it
/// is a WAV file cut short (its header promises more than the file holds).
pub fn decode_audio(path: &Path) -> Result<Vec<f32>> {
    let decoding = Decoding::start(
        path,
        Kind::Audio,
        "audioconvert name=convert ! audioresample ! \
         audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! appsink name=sink sync=false",
    )?;
    // GStreamer's WAV reader trusts the file's size over its header: the header is read here.
    if let Some((promised, held)) = wav_shortfall(path) {
        return Err(decoding.failed(format!(
            "is cut short: its header promises {promised:.2} s of audio, the file holds {held:.2} s (repair or \
             re-export it)"
        )));
    }
    let mut samples = Vec::new();
    decoding.pull(|sample| {
        if let Some(buffer) = sample.buffer() {
            let map = buffer.map_readable().map_err(|_| Error::Media("cannot map audio".into()))?;
            samples.extend(map.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
        Ok(true)
    })?;
    if samples.is_empty() {
        return Err(decoding.failed("contains no audio".into()));
    }
    Ok(samples)
}

/// For a RIFF WAV file whose `data` chunk runs past the end of the file: the seconds its header promises
/// and the seconds the file holds. `None` for anything else, including WAVs written while streaming, whose
/// data size is left 0 or all ones.
fn wav_shortfall(path: &Path) -> Option<(f64, f64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = Vec::with_capacity(4096);
    file.by_ref().take(4096).read_to_end(&mut head).ok()?;
    wav_data_extent(&head).and_then(|(byte_rate, offset, size)| {
        let end = offset + size;
        (end > len && size != 0 && size < 0xffff_f000).then(|| {
            let seconds = |bytes: u64| bytes as f64 / byte_rate as f64;
            (seconds(size), seconds(len.saturating_sub(offset)))
        })
    })
}

/// In the first bytes of a RIFF WAV file: its byte rate, and the offset and size its header gives the
/// `data` chunk.
fn wav_data_extent(head: &[u8]) -> Option<(u64, u64, u64)> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |i: usize| head.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
    let (mut at, mut byte_rate) = (12usize, None);
    while at + 8 <= head.len() {
        let (id, size) = (&head[at..at + 4], u32_at(at + 4)?);
        match id {
            b"fmt " => byte_rate = u32_at(at + 16).filter(|&r| r > 0),
            b"data" => return Some((byte_rate?, at as u64 + 8, size)),
            _ => {}
        }
        at = at.checked_add(8 + size as usize + (size as usize & 1))?;
    }
    None
}

/// Frames of a face video (resampled to 25 fps) or of a still image (one frame), as RGB.
pub struct DecodedVideo {
    pub frames: Vec<VideoFrame>,
    pub width: u32,
    pub height: u32,
}

/// Decodes `path` (a video or a still image) to RGB frames at 25 fps, at most `max_frames` of them, all
/// held in memory (for short clips; [`VideoReader`] reads one frame at a time).
pub fn decode_video(path: &Path, max_frames: usize) -> Result<DecodedVideo> {
    let mut reader = VideoReader::open(path, None)?;
    let (width, height) = (reader.width(), reader.height());
    let mut frames = Vec::new();
    while frames.len() < max_frames {
        match reader.next_frame()? {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    Ok(DecodedVideo { frames, width, height })
}

/// Nanoseconds between frames at [`FPS`].
pub const FRAME_NS: u64 = 1_000_000_000 / FPS as u64;

/// Frames a seek starts before the one wanted: the frame rate conversion then picks the same source frames
/// as when it read the stream from its start.
const SEEK_LEAD: usize = 3;

/// A face video (resampled to 25 fps) or a still image (one frame), decoded as RGB one frame at a time.
/// It can go back to an earlier frame ([`VideoReader::seek`]), so a caller holds only the frames it uses.
pub struct VideoReader {
    decoding: Decoding,
    max_side: Option<u32>,
    width: u32,
    height: u32,
    /// The index of the frame [`VideoReader::next_frame`] returns next.
    position: usize,
    /// The stream time of frame 0.
    origin: u64,
    /// A frame read ahead (the first one, read at opening to learn the size, or the one a seek stopped at).
    ahead: Option<VideoFrame>,
}

impl VideoReader {
    /// Starts decoding `path`; with `max_side`, frames whose width or height exceeds it are scaled down to
    /// fit (keeping their aspect) before anything else sees them.
    pub fn open(path: &Path, max_side: Option<u32>) -> Result<VideoReader> {
        let decoding = Self::start(path, max_side)?;
        let first = decoding.next_sample()?.ok_or_else(|| decoding.failed("contains no video frame".into()))?;
        let origin = first.buffer().and_then(|b| b.pts()).map_or(0, |t| t.nseconds());
        let frame = frame_from_sample(&first, 0)?;
        Ok(VideoReader {
            decoding,
            max_side,
            width: frame.width(),
            height: frame.height(),
            position: 0,
            origin,
            ahead: Some(frame),
        })
    }

    fn start(path: &Path, max_side: Option<u32>) -> Result<Decoding> {
        let rate = if is_image(path) { "" } else { "videorate ! video/x-raw,framerate=25/1 ! " };
        let fit = max_side.map_or(String::new(), |m| format!(",width=[1,{m}],height=[1,{m}],pixel-aspect-ratio=1/1"));
        Decoding::start(
            path,
            Kind::Video,
            &format!(
                "videoconvert name=convert ! {rate}videoscale ! videoconvert ! video/x-raw,format=RGB{fit} ! \
                 appsink name=sink sync=false max-buffers=4"
            ),
        )
    }

    /// The frames' size (after any scaling).
    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The index of the frame [`VideoReader::next_frame`] returns next.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The next frame (its pts: its index at 25 fps), `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>> {
        let frame = match self.ahead.take() {
            Some(frame) => frame,
            None => match self.decoding.next_sample()? {
                Some(sample) => frame_from_sample(&sample, 0)?,
                None => return Ok(None),
            },
        };
        if frame.width() != self.width || frame.height() != self.height {
            return Err(self.decoding.failed("the frame size changes mid-stream".into()));
        }
        let frame = frame.with_pts(self.position as u64 * FRAME_NS, Some(FRAME_NS));
        self.position += 1;
        Ok(Some(frame))
    }

    /// Goes to frame `index`: the next [`VideoReader::next_frame`] returns it (or `None` when the stream
    /// is shorter). Seeks in the file, or decodes it again from the start where it cannot.
    pub fn seek(&mut self, index: usize) -> Result<()> {
        if index == self.position {
            return Ok(());
        }
        self.ahead = None;
        if !is_image(&self.decoding.path) && self.seek_in_file(index)? {
            return Ok(());
        }
        self.decoding = Self::start(&self.decoding.path.clone(), self.max_side)?;
        self.position = 0;
        while self.position < index && self.next_frame()?.is_some() {}
        Ok(())
    }

    /// Seeks to shortly before frame `index` and reads up to it; `false` when the file cannot seek there.
    fn seek_in_file(&mut self, index: usize) -> Result<bool> {
        let from = index.saturating_sub(SEEK_LEAD);
        let at = gst::ClockTime::from_nseconds(self.origin + from as u64 * FRAME_NS);
        if self.decoding.pipeline.seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, at).is_err() {
            return Ok(false);
        }
        loop {
            let Some(sample) = self.decoding.next_sample()? else {
                // The stream ends before `index`.
                self.position = index;
                return Ok(true);
            };
            let Some(pts) = sample.buffer().and_then(|b| b.pts()) else { return Ok(false) };
            let at = ((pts.nseconds().saturating_sub(self.origin) + FRAME_NS / 2) / FRAME_NS) as usize;
            if at > index || at < from {
                // Not where the seek was asked to go: read from the start instead.
                return Ok(false);
            }
            if at == index {
                self.ahead = Some(frame_from_sample(&sample, 0)?);
                self.position = index;
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV header: `fmt ` (16 kHz mono 16-bit), then `extra` chunks, then `data` of `size` bytes.
    fn header(extra: &[(&[u8; 4], &[u8])], size: u32) -> Vec<u8> {
        let mut h = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0".to_vec();
        h.extend(16_000u32.to_le_bytes());
        h.extend(32_000u32.to_le_bytes());
        h.extend([2, 0, 16, 0]);
        for (id, body) in extra {
            h.extend(*id);
            h.extend((body.len() as u32).to_le_bytes());
            h.extend(*body);
            if body.len() % 2 == 1 {
                h.push(0);
            }
        }
        h.extend(b"data");
        h.extend(size.to_le_bytes());
        h
    }

    #[test]
    fn the_wav_header_gives_the_data_chunk() {
        assert_eq!(wav_data_extent(&header(&[], 64_000)), Some((32_000, 44, 64_000)));
        // Other chunks before the data, one of odd length (padded).
        let h = header(&[(b"LIST", b"abc"), (b"fact", b"\x10\0\0\0")], 100);
        assert_eq!(wav_data_extent(&h), Some((32_000, 44 + 12 + 12, 100)));
        assert_eq!(wav_data_extent(b"RIFF\0\0\0\0AVI LIST"), None, "not a WAV");
        assert_eq!(wav_data_extent(&header(&[], 100)[..40]), None, "no data chunk in reach");
        let mut no_rate = header(&[], 100);
        no_rate[28..32].copy_from_slice(&[0; 4]);
        assert_eq!(wav_data_extent(&no_rate), None, "a byte rate of 0");
    }

    proptest::proptest! {
        /// Random and mutated headers: an answer, never a panic (`PROPTEST_CASES` sets how many).
        #[test]
        fn hostile_wav_headers_get_an_answer(
            mut head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            chunks in proptest::collection::vec((0usize..4, proptest::prelude::any::<u32>()), 0..8),
        ) {
            // Half of them a RIFF WAVE file with chunks of random sizes.
            if head.len() >= 12 && chunks.len() % 2 == 0 {
                let mut riff = header(&[], 0)[..12].to_vec();
                for (kind, size) in chunks {
                    riff.extend([b"fmt ", b"data", b"LIST", b"fact"][kind]);
                    riff.extend(size.to_le_bytes());
                }
                riff.extend(&head);
                head = riff;
            }
            if let Some((rate, offset, _)) = wav_data_extent(&head) {
                proptest::prop_assert!(rate > 0 && offset <= head.len() as u64);
            }
        }
    }

    #[test]
    fn a_wav_cut_short_is_told_from_one_written_while_streaming() {
        let dir = std::env::temp_dir().join(format!("lipsync-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, size: u32, held: usize| {
            let path = dir.join(name);
            let mut bytes = header(&[], size);
            bytes.resize(bytes.len() + held, 0);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        assert_eq!(wav_shortfall(&write("cut.wav", 64_000, 16_000)), Some((2.0, 0.5)));
        assert_eq!(wav_shortfall(&write("whole.wav", 16_000, 16_000)), None);
        assert_eq!(wav_shortfall(&write("streamed.wav", u32::MAX, 16_000)), None);
        assert_eq!(wav_shortfall(&write("open.wav", 0, 16_000)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
