//! Hostile input: random and mutated face models, checkpoints, WAV files, RTP URLs and RTP packets. None of
//! them may panic, allocate more than a bound set by its size, or take longer than 5 s; each ends in a
//! result or an error.
//!
//! `PROPTEST_CASES` sets the cases for the parsers written here (256 by default); the paths through
//! GStreamer (WAV decoding, RTP reception) run a fiftieth of that, at least 16. `scripts/fuzz.sh` runs
//! 100,000 cases of each parser.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;

/// Counts each thread's allocated bytes and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = (live.get() + grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes to `System` unchanged; the counting touches only const-initialised thread locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: usize = 1 << 20;

/// Runs `f` on a thread of its own: its result and the most memory it held at once, or a failure if it
/// panicked or ran past 5 s.
fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> (T, usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let result = f();
        let _ = tx.send((result, PEAK.with(Cell::get) - start));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(done) => done,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within 5 s"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// `seed` with 1 to 16 bytes changed (half of them within its first or last 4 kB, where file formats keep
/// their headers and indexes) and, one time in two, cut short.
fn mutated(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let edit = (0u8..3, any::<Index>(), any::<u8>());
    (prop::collection::vec(edit, 1..16), any::<Option<Index>>()).prop_map(move |(edits, cut)| {
        let mut bytes = seed.to_vec();
        let n = bytes.len();
        for (region, at, value) in edits {
            let i = match region {
                0 => at.index(n.min(4096)),
                1 => n - 1 - at.index(n.min(4096)),
                _ => at.index(n),
            };
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(n + 1));
        }
        bytes
    })
}

fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(path)
}

fn read_once(cell: &'static OnceLock<Vec<u8>>, read: impl FnOnce() -> Vec<u8>) -> &'static [u8] {
    cell.get_or_init(read).as_slice()
}

fn face_model(model: lipsync::face::models::FaceModel) -> Vec<u8> {
    lipsync::face::models::ModelSource::default_location().read(model).expect("the face models (scripts/setup.sh)")
}

fn detector() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    read_once(&BYTES, || face_model(lipsync::face::models::FaceModel::Detector))
}

fn mesh() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    read_once(&BYTES, || face_model(lipsync::face::models::FaceModel::Landmarks))
}

/// Parses `bytes` as a TFLite model: an answer within 5 s and at most 4 bytes held per byte read, plus 1 MB.
fn parse_tflite(bytes: Vec<u8>) {
    let len = bytes.len();
    let (_, peak) = guarded("TFLite parse", move || lipsync::face::tflite::TfliteModel::parse(&bytes, "fuzz").is_ok());
    assert!(peak <= 4 * len + MB, "parsing {len} bytes held {peak} bytes");
}

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn tflite_reader_takes_mutated_face_detectors(bytes in mutated(detector())) {
        parse_tflite(bytes);
    }

    #[test]
    fn tflite_reader_takes_mutated_face_meshes(bytes in mutated(mesh())) {
        parse_tflite(bytes);
    }

    #[test]
    fn tflite_reader_takes_random_bytes(mut bytes in prop::collection::vec(any::<u8>(), 0..4096), tag in any::<bool>()) {
        // Half of them past the identifier check.
        if tag && bytes.len() >= 8 {
            bytes[4..8].copy_from_slice(b"TFL3");
        }
        parse_tflite(bytes);
    }
}

fn small_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    read_once(&BYTES, || std::fs::read(shared("fixtures/loader/small_checkpoint.pth")).unwrap())
}

fn small_safetensors() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    read_once(&BYTES, || std::fs::read(shared("fixtures/loader/small_checkpoint_expected.safetensors")).unwrap())
}

/// Loads `bytes` as a checkpoint file named `*.{extension}`: an answer within 5 s, holding at most 4 bytes
/// per byte of file plus 16 MB.
fn load_checkpoint(bytes: Vec<u8>, extension: &str) {
    let dir = std::env::temp_dir().join(format!("lipsync-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:?}.{extension}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&path, &bytes).unwrap();
    let len = bytes.len();
    let file = path.clone();
    let (_, peak) = guarded("checkpoint load", move || lipsync::stsa::weights::load_checkpoint(&file).is_ok());
    std::fs::remove_file(&path).unwrap();
    assert!(peak <= 4 * len + 16 * MB, "loading {len} bytes held {peak} bytes");
}

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn checkpoint_reader_takes_mutated_pytorch_files(bytes in mutated(small_checkpoint())) {
        load_checkpoint(bytes, "pth");
    }

    #[test]
    fn checkpoint_reader_takes_mutated_safetensors(bytes in mutated(small_safetensors())) {
        load_checkpoint(bytes, "safetensors");
    }

    #[test]
    fn checkpoint_reader_takes_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096), pth in any::<bool>()) {
        load_checkpoint(bytes, if pth { "pth" } else { "safetensors" });
    }

    #[test]
    fn rtp_urls_parse_or_say_what_is_wrong(url in "rtp://[a-z0-9.:]{0,20}(\\?[a-z0-9=&]{0,40})?|.{0,60}") {
        if let Err(e) = url.parse::<lipsync::io::RtpSource>() {
            prop_assert!(e.to_string().contains(&url), "{e}");
        }
    }
}

/// Half a second of speech as a WAV file.
fn short_wav() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    read_once(&BYTES, || {
        let wav = std::fs::read(shared("media/speech_16k.wav")).unwrap();
        // The canonical 44-byte header, its data size set to what is kept.
        let keep = 16_000usize;
        let mut short = wav[..44].to_vec();
        short[40..44].copy_from_slice(&(keep as u32).to_le_bytes());
        short[4..8].copy_from_slice(&(36 + keep as u32).to_le_bytes());
        short.extend_from_slice(&wav[44..44 + keep]);
        short
    })
}

proptest! {
    #![proptest_config(config((cases() / 50).max(16)))]

    #[test]
    fn wav_decoding_takes_mutated_files(bytes in mutated(short_wav())) {
        let path = std::env::temp_dir()
            .join(format!("lipsync-hostile-{}-{:?}.wav", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
        std::fs::write(&path, &bytes).unwrap();
        let file = path.clone();
        let (result, _) = guarded("WAV decode", move || lipsync::io::decode_audio(&file).map(|s| s.len()));
        std::fs::remove_file(&path).unwrap();
        if let Err(e) = result {
            prop_assert!(e.to_string().contains("lipsync-hostile"), "the error names the file: {e}");
        }
    }
}

/// An RTP receiver on a port of its own, fed random packets, then a valid one.
#[test]
fn the_rtp_receiver_survives_random_packets() {
    use lipsync::audio::ring::RingConfig;
    use lipsync::io::{LiveClock, RtpAudioReceiver, RtpCodec, RtpSource};
    let mut runner = proptest::test_runner::TestRunner::new(config(1));
    let packets = prop::collection::vec(
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..1500)).prop_map(|(header, mut bytes)| {
            // Half of them with a plausible RTP header (version 2, payload type 96).
            if header && bytes.len() >= 12 {
                bytes[0] = 0x80;
                bytes[1] = 96;
            }
            bytes
        }),
        ((cases() / 50).max(16) as usize) * 8,
    );
    let base = 30000 + (std::process::id() % 20000) as u16;
    for (n, codec) in [RtpCodec::L16 { rate: 16_000, channels: 1 }, RtpCodec::Opus].into_iter().enumerate() {
        let port = base + n as u16;
        let source = RtpSource { address: "127.0.0.1".into(), port, codec, jitter_ms: 20, burst: false };
        let clock = LiveClock::new().unwrap();
        let (producer, mut ring) = lipsync::audio::AudioRing::new(&RingConfig::default());
        let receiver = RtpAudioReceiver::start(&source, producer, &clock).unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for packet in packets.new_tree(&mut runner).unwrap().current() {
            socket.send_to(&packet, ("127.0.0.1", port)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        receiver.check().unwrap_or_else(|e| panic!("{codec:?}: random packets stopped the receiver: {e}"));
        // Still receiving: a valid L16 packet (sequence and time far from the random ones) is heard.
        if let RtpCodec::L16 { .. } = codec {
            let mut packet = vec![0x80, 96, 0x12, 0x34, 0, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef];
            packet.extend(std::iter::repeat_n([0x10, 0x00], 320).flatten());
            for k in 0..20u16 {
                packet[2..4].copy_from_slice(&(0x1234 + k).to_be_bytes());
                packet[4..8].copy_from_slice(&(65_536 + 320 * k as u32).to_be_bytes());
                socket.send_to(&packet, ("127.0.0.1", port)).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
            ring.drain();
            assert!(!ring.is_empty(), "{codec:?}: no audio received after the random packets");
        }
        receiver.check().unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        drop(receiver);
    }
}
