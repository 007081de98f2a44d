//! `lipsync devices`: audio inputs (cpal) and cameras (GStreamer's device monitor).

use gst::prelude::*;

use crate::error::{Error, Result};

pub fn run() -> Result<()> {
    #[cfg(feature = "cpal")]
    {
        say!("Audio inputs (use with --audio mic:NAME):");
        match crate::audio::capture::input_devices() {
            Ok(devs) if devs.is_empty() => say!("  none found"),
            Ok(devs) => {
                for d in devs {
                    let mark = if d.is_default { " (default)" } else { "" };
                    say!("  {}{mark}  [{}; {}]  {}", d.name, d.host, d.id, d.default_config);
                }
            }
            Err(e) => say!("  cannot list: {e}"),
        }
    }
    crate::io::init()?;
    say!("Cameras (use with --camera PATH):");
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    monitor.start().map_err(|e| Error::Media(format!("cannot list cameras: {e}")))?;
    let devices = monitor.devices();
    monitor.stop();
    if devices.is_empty() {
        say!("  none found");
    }
    for d in devices {
        let path =
            d.properties().and_then(|p| ["api.v4l2.path", "device.path"].iter().find_map(|k| p.get::<String>(*k).ok()));
        say!("  {}  {}", d.display_name(), path.unwrap_or_default());
    }
    Ok(())
}
