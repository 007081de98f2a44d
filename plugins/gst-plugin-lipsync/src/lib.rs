//! GStreamer plugin `lipsync`: the element `lipsync` (see `src/lipsync/imp.rs` and the README).

use gst::glib;

mod lipsync;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    lipsync::register(plugin)
}

gst::plugin_define!(
    lipsync,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
