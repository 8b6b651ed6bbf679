//! BlueSphere Studio, the Tauri shell: it registers the commands (thin wrappers over the
//! jobs API in [`commands`]) and opens the window. No product logic lives here.

pub mod commands;

/// Start the app.
pub fn run() {
    let app = tauri::Builder::default()
        .manage(commands::Jobs::default())
        .setup(|app| {
            commands::watch_devices(app.handle().clone());
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::pack,
            commands::pack_release,
            commands::compare,
            commands::rehearse,
            commands::history,
            commands::station,
            commands::inspect,
            commands::verify,
            commands::keygen,
            commands::codes_gen,
            commands::devices,
            commands::device_info,
            commands::ble_scan,
            commands::push,
            commands::device_act,
            commands::start_virtual_device,
            commands::cancel,
            commands::choose_file,
            commands::codes_figures,
            commands::codes_audit,
        ])
        .run(tauri::generate_context!());
    if let Err(e) = app {
        eprintln!("BlueSphere Studio could not start: {e}");
        std::process::exit(1);
    }
}
