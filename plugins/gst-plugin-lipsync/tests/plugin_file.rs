//! The built `libgstlipsync.so` is a loadable GStreamer plugin with the `lipsync` element. In its own test
//! binary: loading the file and registering statically in one process would register the type twice.

use gst::prelude::*;

#[test]
fn the_shared_library_loads_and_provides_lipsync() {
    // cargo test builds the cdylib next to the test binary (target/<profile>/deps).
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let file = deps.join("libgstlipsync.so");
    assert!(file.exists(), "{} not built", file.display());
    let registry = std::env::temp_dir().join(format!("lipsync-plugin-file-{}.bin", std::process::id()));
    // SAFETY: set before GStreamer starts any thread.
    unsafe { std::env::set_var("GST_REGISTRY", registry) };
    gst::init().unwrap();
    let plugin = gst::Plugin::load_file(&file).expect("plugin loads");
    assert_eq!(plugin.plugin_name(), "lipsync");
    gst::Registry::get().add_plugin(&plugin).unwrap();
    let factory = gst::ElementFactory::find("lipsync").expect("lipsync element registered");
    assert_eq!(factory.metadata(gst::ELEMENT_METADATA_KLASS), Some("Filter/Effect/Video"));
    let element = factory.create().build().unwrap();
    for name in ["latency", "renderer", "fallback", "frames-in", "frames-late", "audio-underruns"] {
        assert!(element.find_property(name).is_some(), "property {name}");
    }
}
