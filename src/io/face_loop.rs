//! The face frames of a dub, decoded as they are needed: by default the face video forward, then
//! backward, and so on for as long as the speech lasts (as STSA loops it); or looped, or played once
//! ([`Fit`]). Only a backward run holds frames: a chunk of them, read forward after a seek and handed
//! out in reverse.

use std::collections::VecDeque;
use std::path::Path;

use super::decode::VideoReader;
use crate::error::{Error, Result};
use crate::frame::VideoFrame;

/// The most pixel bytes a backward chunk holds.
const CHUNK_BYTES: usize = 128 << 20;

/// How a face video and speech of different lengths make one dub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "gst", derive(clap::ValueEnum))]
pub enum Fit {
    /// As long as the speech: the video forward, then backward, and so on (as STSA does).
    #[default]
    Bounce,
    /// As long as the speech: the video from its start again each time it ends.
    Loop,
    /// As long as the shorter of the two.
    Cut,
    /// As long as the longer of the two: the video's last frame held, or silence after the speech.
    Pad,
}

impl Fit {
    /// Whether the face video repeats for as long as the speech lasts.
    pub fn repeats(self) -> bool {
        matches!(self, Fit::Bounce | Fit::Loop)
    }
}

/// Source frame for output frame `k` when the face video has `n` frames: forward, then backward, as STSA
/// does (`seq = [0..n-1] + [n-1..0]`, repeated).
pub fn ping_pong(k: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let m = k % (2 * n);
    if m < n { m } else { 2 * n - 1 - m }
}

/// Hands out the face frame for output frames 0, 1, 2, ... in the order of its [`Fit`]: [`ping_pong`],
/// from the start again, or once.
pub struct FaceLoop {
    reader: VideoReader,
    fit: Fit,
    /// The video's length in frames, known once the first forward run has reached its end.
    len: Option<usize>,
    /// The output frame the next call serves.
    next: usize,
    /// The last frame handed out, with its source index (the loop shows each end twice in a row).
    last: Option<(usize, VideoFrame)>,
    /// A backward run's frames read ahead, the next one to hand out at the back.
    chunk: VecDeque<(usize, VideoFrame)>,
}

impl FaceLoop {
    /// Opens the face (a video or a photo); frames larger than `max_side` are scaled down to fit.
    pub fn open(path: &Path, max_side: Option<u32>, fit: Fit) -> Result<FaceLoop> {
        Ok(FaceLoop {
            reader: VideoReader::open(path, max_side)?,
            fit,
            len: None,
            next: 0,
            last: None,
            chunk: VecDeque::new(),
        })
    }

    pub fn width(&self) -> u32 {
        self.reader.width()
    }

    pub fn height(&self) -> u32 {
        self.reader.height()
    }

    /// The face frame for the next output frame (its pts is its source index at 25 fps); `None` once the
    /// video has ended where the fit does not repeat it ([`Fit::Cut`], [`Fit::Pad`]).
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>> {
        let k = self.next;
        self.next += 1;
        let n = match self.len {
            Some(n) => n,
            None => match self.reader.next_frame()? {
                Some(frame) => return Ok(Some(self.hand_out(k, frame))),
                // The first forward run is over: `k` frames long.
                None => {
                    self.len = Some(k);
                    k
                }
            },
        };
        let (index, forward) = match self.fit {
            Fit::Bounce => (ping_pong(k, n), k % (2 * n.max(1)) < n.max(1)),
            Fit::Loop => (k % n.max(1), true),
            Fit::Cut | Fit::Pad if k >= n => return Ok(None),
            Fit::Cut | Fit::Pad => (k, true),
        };
        if let Some((i, frame)) = &self.last
            && *i == index
        {
            return Ok(Some(frame.clone()));
        }
        let frame = if forward { self.forward(index)? } else { self.backward(index)? };
        Ok(Some(self.hand_out(index, frame)))
    }

    fn hand_out(&mut self, index: usize, frame: VideoFrame) -> VideoFrame {
        self.last = Some((index, frame.clone()));
        frame
    }

    /// Frame `index` of a forward run: read in order, after a seek where the run starts.
    fn forward(&mut self, index: usize) -> Result<VideoFrame> {
        self.chunk.clear();
        self.reader.seek(index)?;
        let last = self.last.as_ref().map(|(_, f)| f.clone());
        Self::or_repeat(self.reader.next_frame()?, last)
    }

    /// Frame `index` of a backward run: from the chunk, which is refilled with the frames before it.
    fn backward(&mut self, index: usize) -> Result<VideoFrame> {
        if self.chunk.back().is_none_or(|(i, _)| *i != index) {
            let frame_bytes = (self.width() as usize * self.height() as usize * 3).max(1);
            let size = (CHUNK_BYTES / frame_bytes).max(2);
            let first = (index + 1).saturating_sub(size);
            self.chunk.clear();
            self.reader.seek(first)?;
            let mut previous = self.last.as_ref().map(|(_, f)| f.clone());
            for i in first..=index {
                let frame = Self::or_repeat(self.reader.next_frame()?, previous)?;
                previous = Some(frame.clone());
                self.chunk.push_back((i, frame));
            }
        }
        Ok(self.chunk.pop_back().expect("the chunk ends with the frame asked for").1)
    }

    /// A frame read, or where the stream ended early (a decode after a seek may end a frame short of the
    /// first run's) the one before it again.
    fn or_repeat(read: Option<VideoFrame>, previous: Option<VideoFrame>) -> Result<VideoFrame> {
        read.or(previous).ok_or_else(|| Error::Media("the face video has no frame".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::ping_pong;

    #[test]
    fn ping_pong_matches_stsa() {
        let seq: Vec<usize> = (0..10).map(|k| ping_pong(k, 3)).collect();
        assert_eq!(seq, [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]);
        assert_eq!(ping_pong(7, 1), 0);
    }
}
