//! Tauri's build step, with the app's commands declared so that capabilities can grant them
//! one by one.

fn main() {
    // The page is embedded at compile time. Before `npm run build` in ui/ has made it, a
    // placeholder says how, so that `cargo build` works in a fresh clone.
    let dist = std::path::Path::new("../ui/dist");
    if !dist.join("index.html").exists() {
        let _ = std::fs::create_dir_all(dist);
        let _ = std::fs::write(
            dist.join("index.html"),
            "<!doctype html><html lang=\"en\"><title>BlueSphere Studio</title><p>The Studio's page is not built: run <code>bash scripts/studio.sh</code> (or <code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>) and build again.</p></html>\n",
        );
    }
    let manifest = tauri_build::AppManifest::new().commands(bluesphere_studio_commands());
    if let Err(e) = tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest)) {
        eprintln!("tauri build step failed: {e:#}");
        std::process::exit(1);
    }
}

/// Every command of `src/commands.rs` (the capability file grants each).
fn bluesphere_studio_commands() -> &'static [&'static str] {
    &[
        "app_info",
        "pack",
        "pack_release",
        "compare",
        "rehearse",
        "history",
        "station",
        "inspect",
        "verify",
        "keygen",
        "codes_gen",
        "devices",
        "device_info",
        "ble_scan",
        "push",
        "device_act",
        "start_virtual_device",
        "cancel",
        "choose_file",
        "codes_figures",
        "codes_audit",
    ]
}
