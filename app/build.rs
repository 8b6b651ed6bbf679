//! Tauri's build step, with the app's commands declared so that capabilities can grant them
//! one by one.

fn main() {
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
        "compare",
        "inspect",
        "verify",
        "keygen",
        "codes_gen",
        "devices",
        "device_info",
        "push",
        "device_act",
        "start_virtual_device",
        "cancel",
    ]
}
