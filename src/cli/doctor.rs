//! `lipsync doctor`: checks what breaks in practice when lipsync meets a machine, and says for each
//! either that it is fine or what to run. Nothing is changed.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::face::models::{FaceModel, ModelSource};

/// One finding: what was checked, and whether it is fine, with the detail or the fix.
struct Finding {
    what: &'static str,
    ok: bool,
    say: String,
}

fn ok(what: &'static str, say: impl Into<String>) -> Finding {
    Finding { what, ok: true, say: say.into() }
}

fn fix(what: &'static str, say: impl Into<String>) -> Finding {
    Finding { what, ok: false, say: say.into() }
}

/// The GStreamer elements lipsync's pipelines use, with the Debian package that has each.
const ELEMENTS: &[(&str, &str)] = &[
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("decodebin", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("videoscale", "gstreamer1.0-plugins-base"),
    ("videorate", "gstreamer1.0-plugins-base"),
    ("imagefreeze", "gstreamer1.0-plugins-good"),
    ("audioconvert", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("opusdec", "gstreamer1.0-plugins-base"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("matroskamux", "gstreamer1.0-plugins-good"),
    ("pngenc", "gstreamer1.0-plugins-good"),
    ("udpsrc", "gstreamer1.0-plugins-good"),
    ("rtpjitterbuffer", "gstreamer1.0-plugins-good"),
    ("rtpL16depay", "gstreamer1.0-plugins-good"),
    ("rtpopusdepay", "gstreamer1.0-plugins-good"),
    ("v4l2src", "gstreamer1.0-plugins-good"),
    ("v4l2sink", "gstreamer1.0-plugins-good"),
    ("pulsesink", "gstreamer1.0-pulseaudio"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("avenc_aac", "gstreamer1.0-libav"),
    ("aacparse", "gstreamer1.0-plugins-good"),
];

pub fn run() -> Result<()> {
    let mut findings = vec![gstreamer_elements()];
    findings
        .extend(virtual_camera(Path::new("/sys/module/v4l2loopback"), Path::new("/sys/devices/virtual/video4linux")));
    findings.push(face_models(&ModelSource::default_location()));
    findings.push(audio_server());
    findings.push(cuda());
    for f in &findings {
        say!("{:<4} {:<16} {}", if f.ok { "ok" } else { "fix" }, f.what, f.say);
    }
    let failing = findings.iter().filter(|f| !f.ok).count();
    if failing == 0 {
        say!("everything lipsync needs is here");
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("{failing} of {} checks need a fix (above)", findings.len())))
    }
}

fn gstreamer_elements() -> Finding {
    if let Err(e) = crate::io::init() {
        return fix("gstreamer", format!("{e}: sudo apt-get install gstreamer1.0-plugins-base"));
    }
    let missing: Vec<&(&str, &str)> =
        ELEMENTS.iter().filter(|(name, _)| gst::ElementFactory::find(name).is_none()).collect();
    if missing.is_empty() {
        return ok("gstreamer", format!("{} (all {} elements lipsync uses)", gst::version_string(), ELEMENTS.len()));
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.sort_unstable();
    packages.dedup();
    let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
    fix("gstreamer", format!("missing {}: sudo apt-get install {}", names.join(", "), packages.join(" ")))
}

/// The v4l2loopback module and its devices (`module`: its sysfs folder; `devices`: where video4linux
/// devices are listed), for `live --out v4l2:/dev/videoN`.
fn virtual_camera(module: &Path, devices: &Path) -> Vec<Finding> {
    const LOAD: &str = "sudo modprobe v4l2loopback exclusive_caps=1 card_label=lipsync (package v4l2loopback-dkms)";
    if !module.exists() {
        return vec![fix("virtual camera", format!("v4l2loopback is not loaded: {LOAD}"))];
    }
    let exclusive = std::fs::read_to_string(module.join("parameters/exclusive_caps")).unwrap_or_default();
    let mut out = Vec::new();
    let loopbacks = loopback_devices(devices);
    if loopbacks.is_empty() {
        out.push(fix("virtual camera", format!("v4l2loopback is loaded but made no device: {LOAD}")));
        return out;
    }
    for (i, (dev, name)) in loopbacks.iter().enumerate() {
        // One flag per device, in the order of the module's devices.
        let flag = exclusive.trim().split(',').nth(i).unwrap_or("N");
        let node = Path::new("/dev").join(dev);
        let writable = std::fs::OpenOptions::new().write(true).open(&node).is_ok();
        out.push(match (flag.starts_with(['Y', '1']), writable) {
            (true, true) => ok(
                "virtual camera",
                format!("{} ({name}): exclusive_caps=1, writable; lipsync sends YUY2 at an even width", node.display()),
            ),
            (false, _) => fix(
                "virtual camera",
                format!(
                    "{} ({name}) has exclusive_caps off: Chrome and Zoom will not list it. sudo modprobe -r \
                     v4l2loopback && {LOAD}",
                    node.display()
                ),
            ),
            (true, false) => fix(
                "virtual camera",
                format!(
                    "{} ({name}) is not writable by you: sudo usermod -aG video $USER, then log in again",
                    node.display()
                ),
            ),
        });
    }
    out
}

/// The video4linux devices v4l2loopback made: (device name, card label).
fn loopback_devices(devices: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(devices) else { return Vec::new() };
    let mut found: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let dev = e.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(e.path().join("name")).ok()?.trim().to_owned();
            dev.starts_with("video").then_some((dev, name))
        })
        .collect();
    found.sort_by_key(|(dev, _)| dev.trim_start_matches("video").parse::<u32>().unwrap_or(u32::MAX));
    found
}

fn face_models(source: &ModelSource) -> Finding {
    for model in [FaceModel::Detector, FaceModel::Landmarks] {
        if let Err(e) = source.read(model) {
            return fix("face models", format!("{e}: run scripts/setup.sh (or see models/README.md)"));
        }
    }
    ok("face models", format!("MediaPipe's detector and mesh, checked ({})", source_name(source)))
}

fn source_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Folder(dir) => dir.display().to_string(),
        ModelSource::Wheel(wheel) => wheel.display().to_string(),
    }
}

/// The PulseAudio (or PipeWire's PulseAudio) server that microphones and virtual microphones go through.
fn audio_server() -> Finding {
    let socket = match std::env::var_os("PULSE_SERVER") {
        Some(server) => {
            let server = server.to_string_lossy().into_owned();
            if !server.starts_with("unix:") {
                return ok("audio server", format!("PULSE_SERVER={server} (not checked)"));
            }
            PathBuf::from(server.trim_start_matches("unix:"))
        }
        None => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) => PathBuf::from(dir).join("pulse/native"),
            None => PathBuf::from("/run/user").join(current_uid()).join("pulse/native"),
        },
    };
    audio_server_at(&socket)
}

fn audio_server_at(socket: &Path) -> Finding {
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        ok("audio server", format!("PulseAudio or PipeWire at {}", socket.display()))
    } else {
        fix(
            "audio server",
            format!(
                "none at {}: start PipeWire (systemctl --user start pipewire-pulse) or PulseAudio (pulseaudio --start); \
                 `live --audio mic` and RTP audio work without one",
                socket.display()
            ),
        )
    }
}

fn current_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "0".into())
}

/// `--device cuda`: lipsync built with CUDA and an NVIDIA driver to run it on.
fn cuda() -> Finding {
    if !cfg!(feature = "cuda") {
        return ok("cuda", "not built in (cargo build --release --features cuda for --device cuda); the CPU is used");
    }
    match crate::stsa::models::ComputeDevice::Cuda(0).open() {
        Ok(device) => ok("cuda", crate::stsa::profile::device_name(&device).unwrap_or_else(|| "cuda:0".into())),
        Err(e) => fix("cuda", format!("{e}: install the NVIDIA driver (580 or newer) or use --device cpu")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audio_server_is_found_by_its_socket() {
        let socket = std::env::temp_dir().join(format!("lipsync-doctor-pulse-{}", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        assert!(!audio_server_at(&socket).ok, "nothing listens yet");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert!(audio_server_at(&socket).ok);
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
    }

    #[test]
    fn a_missing_module_says_how_to_load_it() {
        let f = virtual_camera(Path::new("/nonexistent/v4l2loopback"), Path::new("/nonexistent"));
        assert_eq!(f.len(), 1);
        assert!(!f[0].ok && f[0].say.contains("modprobe v4l2loopback exclusive_caps=1"), "{}", f[0].say);
    }

    #[test]
    fn loopback_devices_are_read_from_sysfs_and_exclusive_caps_per_device() {
        let root = std::env::temp_dir().join(format!("lipsync-doctor-{}", std::process::id()));
        let (module, devices) = (root.join("module"), root.join("devices"));
        std::fs::create_dir_all(module.join("parameters")).unwrap();
        std::fs::write(module.join("parameters/exclusive_caps"), "N,Y\n").unwrap();
        for (dev, name) in [("video97", "lipsync"), ("video9", "other")] {
            std::fs::create_dir_all(devices.join(dev)).unwrap();
            std::fs::write(devices.join(dev).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            loopback_devices(&devices),
            [("video9".to_string(), "other".to_string()), ("video97".to_string(), "lipsync".to_string())]
        );
        let f = virtual_camera(&module, &devices);
        assert_eq!(f.len(), 2);
        assert!(!f[0].ok && f[0].say.contains("exclusive_caps off"), "{}", f[0].say);
        // exclusive_caps on, but no /dev/video97 here to write to.
        assert!(!f[1].ok && f[1].say.contains("not writable"), "{}", f[1].say);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
