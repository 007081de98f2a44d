//! Live capture: one clock for every pipeline of a live session, and video input from a camera
//! (`/dev/videoN`), a test pattern (`test`), a photo (held as a live video) or a video file played in real
//! time, once or looping.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;

use super::{by_name, check_bus, frame_from_sample, launch, set_state};
use crate::error::{Error, Result};
use crate::frame::VideoFrame;

/// The clock and base time shared by the capture, audio and output pipelines, so their running times
/// (the engine's time base) agree.
#[derive(Clone)]
pub struct LiveClock {
    clock: gst::Clock,
    base: gst::ClockTime,
}

impl LiveClock {
    pub fn new() -> Result<Self> {
        super::init()?;
        let clock = gst::SystemClock::obtain();
        let base = clock.time();
        Ok(LiveClock { clock, base })
    }

    /// Running time now, in ns.
    pub fn now(&self) -> u64 {
        self.clock.time().saturating_sub(self.base).nseconds()
    }

    /// The system clock's time (CLOCK_MONOTONIC) at running time 0.
    pub fn base(&self) -> gst::ClockTime {
        self.base
    }

    /// Makes `pipeline` run on this clock and base time.
    pub fn attach(&self, pipeline: &gst::Pipeline) {
        pipeline.use_clock(Some(&self.clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(self.base);
    }
}

/// Live video frames with running-time pts.
pub struct VideoInput {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    source: String,
    /// Set when the file given has no video stream.
    no_video: Arc<AtomicBool>,
    /// A video file that starts again when it ends.
    looping: Option<Looping>,
}

/// Where a looping file's passes lie in the session: each pass starts where the last one's frames ended.
struct Looping {
    /// The session's base time.
    base: gst::ClockTime,
    /// Running time of the current pass's start in the session.
    offset: Cell<u64>,
    /// Running time just after the last frame pulled, in the session.
    end: Cell<u64>,
}

impl VideoInput {
    /// `source`: `/dev/videoN`, `test` (a moving test pattern), a photo (its frame repeated, live) or a
    /// video file played in real time; `looping`: a video file starts again when it ends (seamlessly in
    /// time: the frames' running times go on).
    pub fn open(source: &str, clock: &LiveClock, looping: bool) -> Result<Self> {
        let caps = "video/x-raw,format=RGB,framerate=25/1";
        let head = if source == "test" {
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480 ! videoconvert".to_owned()
        } else if source.starts_with("/dev/video") {
            "v4l2src name=src ! videoconvert ! videorate".to_owned()
        } else if Path::new(source).exists() && super::is_image(Path::new(source)) {
            "filesrc name=src ! decodebin ! videoconvert ! imagefreeze is-live=true".to_owned()
        } else if Path::new(source).exists() {
            "filesrc name=src ! decodebin name=decoder ! videoconvert name=convert ! videorate".to_owned()
        } else {
            return Err(Error::InvalidArgument(format!(
                "camera `{source}`: use /dev/videoN (see `lipsync devices`), `test`, or an existing video file"
            )));
        };
        let pipeline = launch(&format!("{head} ! {caps} ! appsink name=sink sync=true max-buffers=2 drop=true"))?;
        if let Some(src) = pipeline.by_name("src") {
            let prop = if source.starts_with("/dev/video") { "device" } else { "location" };
            src.set_property(prop, source);
        }
        clock.attach(&pipeline);
        let sink: gst_app::AppSink = by_name(&pipeline, "sink")?;
        // A file: once decodebin has exposed all its streams, an unlinked converter means it has no video.
        let no_video = Arc::new(AtomicBool::new(false));
        if let (Some(decoder), Some(convert)) = (pipeline.by_name("decoder"), pipeline.by_name("convert")) {
            let (flag, convert) = (no_video.clone(), convert.downgrade());
            decoder.connect("no-more-pads", false, move |_| {
                let linked = convert.upgrade().and_then(|c| c.static_pad("sink")).is_some_and(|p| p.is_linked());
                flag.store(!linked, Ordering::Release);
                None
            });
        }
        let looping = looping.then(|| Looping { base: clock.base, offset: Cell::new(0), end: Cell::new(0) });
        let looping = looping.filter(|_| pipeline.by_name("decoder").is_some());
        set_state(&pipeline, gst::State::Playing)?;
        Ok(VideoInput { pipeline, sink, source: source.to_owned(), no_video, looping })
    }

    /// The next frame, waiting at most `timeout`; `Ok(None)` on timeout; an error at the end of the
    /// stream or on failure.
    pub fn pull(&self, timeout: gst::ClockTime) -> Result<Option<VideoFrame>> {
        let pulled = self.pull_sample(timeout);
        // The decoder's error for a stream nobody takes says less than this.
        if self.no_video.load(Ordering::Acquire) {
            return Err(Error::Media(format!(
                "{}: has no video stream: give a video file, a camera (/dev/videoN) or `test`",
                self.source
            )));
        }
        pulled
    }

    fn pull_sample(&self, timeout: gst::ClockTime) -> Result<Option<VideoFrame>> {
        match self.sink.try_pull_sample(timeout) {
            Some(sample) => {
                let buffer = sample.buffer().ok_or_else(|| Error::Media("empty video sample".into()))?;
                let pts = buffer
                    .pts()
                    .and_then(|pts| sample.segment()?.downcast_ref::<gst::ClockTime>()?.to_running_time(pts))
                    .ok_or(Error::MissingTimestamp { what: "a camera frame" })?
                    .nseconds();
                let pts = match &self.looping {
                    Some(l) => {
                        let pts = pts + l.offset.get();
                        l.end.set(pts + buffer.duration().map_or(super::FRAME_NS, |d| d.nseconds()));
                        pts
                    }
                    None => pts,
                };
                Ok(Some(frame_from_sample(&sample, pts)?))
            }
            None if self.sink.is_eos()
                && let Some(l) = &self.looping =>
            {
                // Again from the start, its running time 0 at the session's time just after the last frame.
                l.offset.set(l.end.get());
                self.pipeline.set_base_time(l.base + gst::ClockTime::from_nseconds(l.offset.get()));
                self.pipeline
                    .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO)
                    .map_err(|_| Error::Media(format!("{}: cannot seek back to its start to loop it", self.source)))?;
                Ok(None)
            }
            None if self.sink.is_eos() => {
                check_bus(&self.pipeline)?;
                Err(Error::Media("the video input ended".into()))
            }
            None => check_bus(&self.pipeline).map(|_| None),
        }
    }
}

impl Drop for VideoInput {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
