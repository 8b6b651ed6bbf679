//! The Studio's commands: each forwards to the jobs API that the CLI calls too, off the main
//! thread, with progress through a [`Channel`] and cancel by job id. Errors reach the page as
//! the API's `{kind, message, hint}`.

use std::collections::HashMap;
use std::sync::Mutex;

use bluesphere_api::codes::{CodesGenReport, CodesGenRequest};
use bluesphere_api::compare::{CompareReport, CompareRequest};
use bluesphere_api::device::{
    Action, ActionReport, InfoReport, PushReport, PushRequest, Target, VirtualDevice,
    VirtualRequest,
};
use bluesphere_api::package::{
    InspectReport, InspectRequest, KeygenReport, KeygenRequest, PackReport, PackRequest,
    VerifyReport, VerifyRequest,
};
use bluesphere_api::{Cancel, Error, ErrorKind, Event, NoSecrets, Passphrase, Progress, Secrets};
use tauri::ipc::Channel;
use tauri::{Emitter, State};

/// Cancel tokens of running jobs (by the page's job id) and the virtual device.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<HashMap<u32, Cancel>>,
    virtual_device: Mutex<Option<VirtualDevice>>,
}

impl Jobs {
    fn start(&self, job: u32) -> Cancel {
        let c = Cancel::new();
        if let Ok(mut m) = self.running.lock() {
            m.insert(job, c.clone());
        }
        c
    }

    fn end(&self, job: u32) {
        if let Ok(mut m) = self.running.lock() {
            m.remove(&job);
        }
    }
}

/// Progress events to the page.
struct ToPage(Channel<Event>);

impl Progress for ToPage {
    fn event(&self, e: Event) {
        let _ = self.0.send(e);
    }
}

fn secrets(passphrase: Option<String>) -> Box<dyn Secrets + Send> {
    match passphrase {
        Some(p) => Box::new(Passphrase(p)),
        None => Box::new(NoSecrets),
    }
}

/// Run `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("the job stopped: {e}")))?
}

/// The app's version and where its sample images are.
#[tauri::command]
pub fn app_info() -> bluesphere_api::AppInfo {
    bluesphere_api::app_info()
}

/// Make a signed package.
#[tauri::command]
pub async fn pack(
    jobs: State<'_, Jobs>,
    req: PackRequest,
    passphrase: Option<String>,
    job: u32,
    on_event: Channel<Event>,
) -> Result<PackReport, Error> {
    let cancel = jobs.start(job);
    let r = blocking(move || {
        bluesphere_api::package::pack(&req, &*secrets(passphrase), &ToPage(on_event), &cancel)
    })
    .await;
    jobs.end(job);
    r
}

/// Make a package of several components from a release manifest.
#[tauri::command]
pub async fn pack_release(
    jobs: State<'_, Jobs>,
    req: bluesphere_api::release::ReleaseRequest,
    passphrase: Option<String>,
    job: u32,
    on_event: Channel<Event>,
) -> Result<bluesphere_api::release::ReleaseReport, Error> {
    let cancel = jobs.start(job);
    let r = blocking(move || {
        bluesphere_api::release::pack_release(
            &req,
            &*secrets(passphrase),
            &ToPage(on_event),
            &cancel,
        )
    })
    .await;
    jobs.end(job);
    r
}

/// Rehearse a package with power cuts on simulated flash.
#[tauri::command]
pub async fn rehearse(
    jobs: State<'_, Jobs>,
    req: bluesphere_api::rehearse::RehearseRequest,
    job: u32,
    on_event: Channel<Event>,
) -> Result<bluesphere_api::rehearse::RehearseReport, Error> {
    let cancel = jobs.start(job);
    let r = blocking(move || bluesphere_api::rehearse::rehearse(&req, &ToPage(on_event), &cancel))
        .await;
    jobs.end(job);
    r
}

/// The history of pushes and code batches (and its CSV export).
#[tauri::command]
pub async fn history(
    req: bluesphere_api::history::HistoryRequest,
) -> Result<bluesphere_api::history::HistoryReport, Error> {
    blocking(move || bluesphere_api::history::history(&req)).await
}

/// Sizes, transfer times and changed regions of a package's images.
#[tauri::command]
pub async fn compare(req: CompareRequest) -> Result<CompareReport, Error> {
    blocking(move || bluesphere_api::compare::compare(&req)).await
}

/// Describe a package.
#[tauri::command]
pub async fn inspect(req: InspectRequest) -> Result<InspectReport, Error> {
    blocking(move || bluesphere_api::package::inspect(&req)).await
}

/// Check a package.
#[tauri::command]
pub async fn verify(req: VerifyRequest) -> Result<VerifyReport, Error> {
    blocking(move || bluesphere_api::package::verify(&req)).await
}

/// Make a signing key pair.
#[tauri::command]
pub async fn keygen(req: KeygenRequest, passphrase: Option<String>) -> Result<KeygenReport, Error> {
    blocking(move || bluesphere_api::package::keygen(&req, &*secrets(passphrase))).await
}

/// Issue activation codes.
#[tauri::command]
pub async fn codes_gen(
    jobs: State<'_, Jobs>,
    req: CodesGenRequest,
    passphrase: Option<String>,
    job: u32,
    on_event: Channel<Event>,
) -> Result<CodesGenReport, Error> {
    let cancel = jobs.start(job);
    let r = blocking(move || {
        bluesphere_api::codes::codes_gen(&req, &*secrets(passphrase), &ToPage(on_event), &cancel)
    })
    .await;
    jobs.end(job);
    r
}

/// The production-line station: activate every device that appears, until cancelled.
#[tauri::command]
pub async fn station(
    jobs: State<'_, Jobs>,
    req: bluesphere_api::codes::StationRequest,
    passphrase: Option<String>,
    job: u32,
    on_event: Channel<Event>,
) -> Result<bluesphere_api::codes::StationReport, Error> {
    let cancel = jobs.start(job);
    let r = blocking(move || {
        bluesphere_api::codes::station(&req, &*secrets(passphrase), &ToPage(on_event), &cancel)
    })
    .await;
    jobs.end(job);
    r
}

/// Serial ports and devices.
#[tauri::command]
pub async fn devices() -> Result<Vec<bluesphere_api::device::DeviceEntry>, Error> {
    blocking(bluesphere_api::device::devices).await
}

/// Scan for devices that take updates over Bluetooth LE.
#[tauri::command]
pub async fn ble_scan(seconds: f64) -> Result<Vec<bluesphere_api::device::BleDeviceReport>, Error> {
    blocking(move || bluesphere_api::device::ble_scan(seconds)).await
}

/// Ask a device who it is.
#[tauri::command]
pub async fn device_info(target: Target) -> Result<InfoReport, Error> {
    blocking(move || bluesphere_api::device::info(&target)).await
}

/// Push a package to a device.
#[tauri::command]
pub async fn push(
    jobs: State<'_, Jobs>,
    req: PushRequest,
    job: u32,
    on_event: Channel<Event>,
) -> Result<PushReport, Error> {
    let cancel = jobs.start(job);
    let r = blocking(move || bluesphere_api::device::push(&req, &ToPage(on_event), &cancel)).await;
    jobs.end(job);
    r
}

/// Confirm, revert or reboot.
#[tauri::command]
pub async fn device_act(target: Target, action: Action) -> Result<ActionReport, Error> {
    blocking(move || bluesphere_api::device::act(&target, action)).await
}

/// Start (or restart) the virtual device; returns the port to use.
#[tauri::command]
pub async fn start_virtual_device(
    jobs: State<'_, Jobs>,
    req: VirtualRequest,
) -> Result<String, Error> {
    if let Ok(mut v) = jobs.virtual_device.lock() {
        v.take();
    }
    let dev = blocking(move || bluesphere_api::device::start_virtual(&req)).await?;
    let port = dev.port.clone();
    if let Ok(mut v) = jobs.virtual_device.lock() {
        *v = Some(dev);
    }
    Ok(port)
}

/// The OS's file dialog (GTK on Linux). `mode`: `open` (an existing file), `save` (a file
/// name to write) or `folder`; `filters` are `(name, extensions)`; `start` a path to open
/// at. `None` when the user cancels. The dialog is built on the main thread, as the toolkit
/// requires, and is not modal for the app's event loop: the command awaits its answer.
#[tauri::command]
pub async fn choose_file(
    window: tauri::WebviewWindow,
    title: String,
    mode: String,
    filters: Vec<(String, Vec<String>)>,
    start: Option<String>,
) -> Result<Option<String>, Error> {
    type Answer =
        std::pin::Pin<Box<dyn std::future::Future<Output = Option<rfd::FileHandle>> + Send>>;
    let (tx, rx) = std::sync::mpsc::channel::<Answer>();
    let parent = window.clone();
    window
        .run_on_main_thread(move || {
            let mut d = rfd::AsyncFileDialog::new()
                .set_title(&title)
                .set_parent(&parent);
            for (name, ext) in &filters {
                d = d.add_filter(name, ext);
            }
            if let Some(p) = start.as_deref().map(std::path::Path::new) {
                if p.is_dir() {
                    d = d.set_directory(p);
                } else if let Some(dir) = p.parent().filter(|d| d.is_dir()) {
                    d = d.set_directory(dir);
                    if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                        d = d.set_file_name(name);
                    }
                }
            }
            let answer: Answer = match mode.as_str() {
                "save" => Box::pin(d.save_file()),
                "folder" => Box::pin(d.pick_folder()),
                _ => Box::pin(d.pick_file()),
            };
            let _ = tx.send(answer);
        })
        .map_err(|e| Error::new(ErrorKind::Internal, format!("no file dialog: {e}")))?;
    let answer = blocking(move || {
        rx.recv()
            .map_err(|_| Error::new(ErrorKind::Internal, "the file dialog could not be built"))
    })
    .await?;
    Ok(answer.await.map(|f| f.path().display().to_string()))
}

/// A registry's figures: codes issued, duplicates refused, per order and product.
#[tauri::command]
pub async fn codes_figures(
    req: bluesphere_api::codes::FiguresRequest,
) -> Result<bluesphere_api::codes::FiguresReport, Error> {
    blocking(move || bluesphere_api::codes::codes_figures(&req)).await
}

/// Export a registry's audit log as CSV.
#[tauri::command]
pub async fn codes_audit(
    req: bluesphere_api::codes::AuditRequest,
) -> Result<bluesphere_api::codes::AuditReport, Error> {
    blocking(move || bluesphere_api::codes::codes_audit(&req)).await
}

/// Cancel a running job.
#[tauri::command]
pub fn cancel(jobs: State<'_, Jobs>, job: u32) {
    if let Ok(m) = jobs.running.lock() {
        if let Some(c) = m.get(&job) {
            c.cancel();
        }
    }
}

/// Plug and unplug as an app event: the port list is read every second off the main thread
/// and `devices` is emitted with the new list whenever it changes.
pub fn watch_devices(app: tauri::AppHandle) {
    std::thread::spawn(move || {
        let mut last: Option<Vec<bluesphere_api::device::DeviceEntry>> = None;
        loop {
            if let Ok(now) = bluesphere_api::device::devices() {
                if last.as_ref() != Some(&now) {
                    if app.emit("devices", &now).is_err() {
                        return;
                    }
                    last = Some(now);
                }
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    });
}
