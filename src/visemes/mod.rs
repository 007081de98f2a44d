//! Visemes: what the mouth shows for the sounds of speech. The classic renderer takes the lips' shape from
//! them: from the audio through a small classifier ([`model`], trained by `examples/train_visemes.rs`,
//! run on the stream by [`estimator`]) or, when a TTS says what it spoke and when, from its timed phonemes
//! ([`PhonemeTrack`], shared with the renderer through a [`PhonemeFeed`]).

pub mod estimator;
pub mod features;
pub mod feed;
pub mod model;
pub mod phonemes;

pub use estimator::VisemeEstimator;
pub use feed::PhonemeFeed;
pub use model::VisemeModel;
pub use phonemes::{PhonemeTrack, TimedPhoneme, Viseme};
