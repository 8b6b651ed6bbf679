//! The virtual device as a real Bluetooth LE peripheral (BlueZ through `bluer`): the GATT
//! service of `docs/PROTOCOL.md` section 6, advertised with the product and hardware as its
//! name, and a byte link ([`BleIo`]) the device SDK's `serve` loop reads and writes exactly as
//! it does a UART.
//!
//! BlueZ runs on its own thread (a small tokio runtime); the serve loop talks to it through
//! two channels: the RX characteristic's writes come in as they arrive, answers go out as
//! notifications of at most the negotiated MTU − 3 bytes.

use std::sync::mpsc;
use std::time::Duration;

use bluer::adv::Advertisement;
use bluer::gatt::local::{
    characteristic_control, Application, Characteristic, CharacteristicControlEvent,
    CharacteristicNotify, CharacteristicNotifyMethod, CharacteristicWrite,
    CharacteristicWriteMethod, Service,
};
use bluer::gatt::{CharacteristicReader, CharacteristicWriter};
use bluesphere_core::proto::{BLE_RX_CHARACTERISTIC, BLE_SERVICE, BLE_TX_CHARACTERISTIC};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

/// How often the advertisement is registered again until a central subscribes (some
/// controllers report an advertiser only when advertising starts).
const READVERTISE: Duration = Duration::from_secs(2);

/// The byte link to a connected central, for the device SDK's `serve`.
#[derive(Debug)]
pub struct BleIo {
    rx: mpsc::Receiver<Vec<u8>>,
    tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    pending: Vec<u8>,
}

impl embedded_io::ErrorType for BleIo {
    type Error = std::io::Error;
}

impl embedded_io::Read for BleIo {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        if self.pending.is_empty() {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(v) => self.pending = v,
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(0),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other("the Bluetooth service stopped"))
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl embedded_io::Write for BleIo {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        self.tx
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::other("the Bluetooth service stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// Start the peripheral on `adapter` (the default adapter when `None`), advertising `name`.
/// Returns once BlueZ has the service and the advertisement, with the adapter's name and
/// address; `log` gets a line per connection event (from the BlueZ thread).
pub fn start(
    adapter: Option<String>,
    name: String,
    log: impl Fn(&str) + Send + 'static,
) -> Result<(BleIo, String), String> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>();
    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::Builder::new()
        .name("bluez".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(run(adapter, name, ready_tx, in_tx, out_rx, log));
        })
        .map_err(|e| e.to_string())?;
    let what = ready_rx
        .recv()
        .map_err(|_| "the Bluetooth thread stopped before it started".to_string())??;
    Ok((
        BleIo {
            rx: in_rx,
            tx: out_tx,
            pending: Vec::new(),
        },
        what,
    ))
}

fn explain(e: bluer::Error) -> String {
    bluesphere_host::ble::explain_bluez(e.to_string())
}

async fn run(
    adapter: Option<String>,
    name: String,
    ready: mpsc::Sender<Result<String, String>>,
    incoming: mpsc::Sender<Vec<u8>>,
    mut outgoing: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    log: impl Fn(&str),
) {
    let (rx_control, rx_handle) = characteristic_control();
    let (tx_control, tx_handle) = characteristic_control();
    let setup = async {
        let session = bluer::Session::new().await.map_err(explain)?;
        let adapter = match &adapter {
            Some(a) => session.adapter(a).map_err(explain)?,
            None => session.default_adapter().await.map_err(explain)?,
        };
        adapter.set_powered(true).await.map_err(explain)?;
        let app = Application {
            services: vec![Service {
                uuid: Uuid::from_u128(BLE_SERVICE),
                primary: true,
                characteristics: vec![
                    Characteristic {
                        uuid: Uuid::from_u128(BLE_RX_CHARACTERISTIC),
                        write: Some(CharacteristicWrite {
                            write_without_response: true,
                            method: CharacteristicWriteMethod::Io,
                            ..Default::default()
                        }),
                        control_handle: rx_handle,
                        ..Default::default()
                    },
                    Characteristic {
                        uuid: Uuid::from_u128(BLE_TX_CHARACTERISTIC),
                        notify: Some(CharacteristicNotify {
                            notify: true,
                            method: CharacteristicNotifyMethod::Io,
                            ..Default::default()
                        }),
                        control_handle: tx_handle,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let app = adapter.serve_gatt_application(app).await.map_err(explain)?;
        let address = adapter.address().await.map_err(explain)?;
        Ok::<_, String>((adapter, app, address))
    };
    let (adapter, _app, address) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // A device that restarts has no connections: drop one this adapter still holds from
    // before (the process was killed), so the central notices and connects again.
    for addr in adapter.device_addresses().await.unwrap_or_default() {
        if let Ok(d) = adapter.device(addr) {
            if d.is_connected().await.unwrap_or(false) && d.disconnect().await.is_ok() {
                log(&format!(
                    "dropped the connection of central {addr} left from before the restart"
                ));
            }
        }
    }
    let advertisement = || Advertisement {
        service_uuids: [Uuid::from_u128(BLE_SERVICE)].into_iter().collect(),
        discoverable: Some(true),
        local_name: Some(name.clone()),
        ..Default::default()
    };
    let mut adv = match adapter.advertise(advertisement()).await {
        Ok(h) => Some(h),
        Err(e) => {
            let _ = ready.send(Err(format!(
                "BlueZ refused the advertisement: {}",
                explain(e)
            )));
            return;
        }
    };
    let _ = ready.send(Ok(format!("{} ({address})", adapter.name())));
    tokio::pin!(rx_control);
    tokio::pin!(tx_control);
    let mut reader: Option<CharacteristicReader> = None;
    let mut writer: Option<CharacteristicWriter> = None;
    let mut buf = vec![0u8; 517];
    let mut tick = tokio::time::interval(READVERTISE);
    // Every write and notification in the log (for debugging a central).
    let trace = std::env::var_os("BLUESPHERE_BLE_TRACE").is_some();
    loop {
        tokio::select! {
            ev = rx_control.next() => match ev {
                Some(CharacteristicControlEvent::Write(req)) => {
                    log(&format!("central {} writes (MTU {})", req.device_address(), req.mtu()));
                    buf.resize(req.mtu().max(23), 0);
                    reader = req.accept().ok();
                }
                Some(CharacteristicControlEvent::Notify(_)) => {}
                None => return,
            },
            ev = tx_control.next() => match ev {
                Some(CharacteristicControlEvent::Notify(w)) => {
                    log(&format!("central {} subscribed (MTU {})", w.device_address(), w.mtu()));
                    writer = Some(w);
                }
                Some(CharacteristicControlEvent::Write(_)) => {}
                None => return,
            },
            got = async {
                match reader.as_mut() {
                    Some(r) => r.read(&mut buf).await,
                    None => std::future::pending().await,
                }
            } => match got {
                Ok(n) if n > 0 => {
                    if trace {
                        log(&format!("rx {n} bytes {:02x?}", &buf[..n.min(24)]));
                    }
                    if incoming.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                _ => {
                    log("central stopped writing (disconnected)");
                    reader = None;
                }
            },
            out = outgoing.recv() => {
                let Some(bytes) = out else { return };
                let Some(w) = writer.as_ref() else {
                    if trace {
                        log(&format!("tx {} bytes dropped: no subscriber", bytes.len()));
                    }
                    continue;
                };
                if trace {
                    log(&format!("tx {} bytes {:02x?}", bytes.len(), &bytes[..bytes.len().min(24)]));
                }
                let mtu = w.mtu().max(20);
                let mut lost = false;
                for piece in bytes.chunks(mtu) {
                    if w.send(piece).await.is_err() {
                        lost = true;
                        break;
                    }
                }
                if lost {
                    log("central stopped listening (disconnected)");
                    writer = None;
                }
            },
            _ = tick.tick() => {
                if let Some(w) = writer.as_ref() {
                    let connected = match adapter.device(w.device_address()) {
                        Ok(d) => d.is_connected().await.unwrap_or(false),
                        Err(_) => false,
                    };
                    if !connected {
                        log(&format!("central {} disconnected", w.device_address()));
                        writer = None;
                        reader = None;
                    }
                }
                if writer.is_none() {
                    drop(adv.take());
                    adv = adapter.advertise(advertisement()).await.ok();
                }
            }
        }
    }
}
