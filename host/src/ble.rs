//! Bluetooth LE central (btleplug): find devices that advertise the near-field service
//! (`docs/PROTOCOL.md` section 6). A computer without Bluetooth gets
//! [`HostError::NoBluetooth`], never a crash.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bluesphere_core::proto::{BLE_RX_CHARACTERISTIC, BLE_SERVICE, BLE_TX_CHARACTERISTIC};
use btleplug::api::{
    Central, Characteristic, Manager as _, Peripheral as _, ScanFilter, ValueNotification,
    WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::transport::{Address, Connector, DeviceEntry, Link, LinkError};
use crate::HostError;

/// A device found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleDevice {
    /// Its address (Linux, Windows) or the OS's identifier for it.
    pub id: String,
    /// Its advertised name (`PRODUCT HARDWARE`), once known: names may arrive late, in a
    /// scan response.
    pub name: Option<String>,
    /// Signal strength, dBm (the last one heard).
    pub rssi: Option<i16>,
}

/// `message` (from btleplug or bluer) explained when it means BlueZ is not there: Linux
/// programs talk to BlueZ over the system D-Bus, and without it there is no Bluetooth.
pub fn explain_bluez(message: String) -> String {
    if message.contains("system_bus_socket")
        || message.contains("org.bluez")
        || message.contains("ServiceUnknown")
    {
        format!("no Bluetooth service (BlueZ) runs on this computer ({message})")
    } else {
        message
    }
}

fn no_bluetooth(e: impl std::fmt::Display) -> HostError {
    HostError::NoBluetooth(explain_bluez(e.to_string()))
}

/// Scan for `timeout` on the first adapter: the devices that advertise the BlueSphere
/// service, strongest first.
pub fn scan(timeout: Duration) -> Result<Vec<BleDevice>, HostError> {
    scan_on(None, timeout)
}

/// [`scan`] on the adapter `adapter` (`hci0`; `None`: the first one).
pub fn scan_on(adapter: Option<&str>, timeout: Duration) -> Result<Vec<BleDevice>, HostError> {
    let rt = runtime()?;
    rt.block_on(async {
        let manager = Manager::new().await.map_err(no_bluetooth)?;
        let adapter = pick_adapter(&manager, adapter).await?;
        let service = Uuid::from_u128(BLE_SERVICE);
        adapter
            .start_scan(ScanFilter {
                services: vec![service],
            })
            .await
            .map_err(|e| HostError::BluetoothOff(e.to_string()))?;
        let until = Instant::now() + timeout;
        let mut found: Vec<BleDevice> = Vec::new();
        loop {
            for p in adapter.peripherals().await.map_err(no_bluetooth)? {
                let Ok(Some(props)) = p.properties().await else {
                    continue;
                };
                if !props.services.contains(&service) {
                    continue;
                }
                let id = props.address.to_string();
                match found.iter_mut().find(|f| f.id == id) {
                    Some(f) => {
                        f.name = props.local_name.or(f.name.take());
                        f.rssi = props.rssi.or(f.rssi);
                    }
                    None => found.push(BleDevice {
                        id,
                        name: props.local_name,
                        rssi: props.rssi,
                    }),
                }
            }
            if Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let _ = adapter.stop_scan().await;
        found.sort_by_key(|d| std::cmp::Reverse(d.rssi.unwrap_or(i16::MIN)));
        Ok(found)
    })
}

/// Opens [`BleLink`]s: finds the device by scanning for it, then connects.
#[derive(Debug, Clone)]
pub struct BleConnector {
    /// The adapter to use (`hci0`; on other systems a prefix of the OS's adapter name);
    /// `None`: the first one.
    pub adapter: Option<String>,
    /// How long to scan for the device before giving up.
    pub scan_for: Duration,
}

impl Default for BleConnector {
    fn default() -> Self {
        Self {
            adapter: None,
            scan_for: Duration::from_secs(10),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, HostError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(no_bluetooth)
}

async fn pick_adapter(manager: &Manager, want: Option<&str>) -> Result<Adapter, HostError> {
    let adapters = manager.adapters().await.map_err(no_bluetooth)?;
    let Some(want) = want else {
        return adapters
            .into_iter()
            .next()
            .ok_or_else(|| no_bluetooth("no Bluetooth adapter on this computer"));
    };
    for a in adapters {
        if a.adapter_info().await.is_ok_and(|i| i.starts_with(want)) {
            return Ok(a);
        }
    }
    Err(no_bluetooth(format!("no Bluetooth adapter {want}")))
}

/// The live link to one device: the RX characteristic written without response, the TX
/// characteristic's notifications read back.
pub struct BleLink {
    rt: tokio::runtime::Runtime,
    _manager: Manager,
    peripheral: Peripheral,
    rx_char: Characteristic,
    notifications: Pin<Box<dyn Stream<Item = ValueNotification> + Send>>,
    /// Bytes per write: ATT MTU − 3.
    payload: usize,
    out: Vec<u8>,
    input: Vec<u8>,
    id: String,
}

impl std::fmt::Debug for BleLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleLink")
            .field("id", &self.id)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl BleLink {
    /// The ATT MTU in use.
    pub fn mtu(&self) -> usize {
        self.payload + 3
    }

    fn write(&mut self, n: usize) -> Result<(), LinkError> {
        let chunk: Vec<u8> = self.out.drain(..n).collect();
        self.rt
            .block_on(
                self.peripheral
                    .write(&self.rx_char, &chunk, WriteType::WithoutResponse),
            )
            .map_err(|e| LinkError::Closed(format!("{}: {e}", self.id)))
    }
}

impl Link for BleLink {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        // Writes are filled from the stream; the rest goes out before the next receive.
        self.out.extend_from_slice(frame);
        while self.out.len() >= self.payload {
            self.write(self.payload)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], wait: Duration) -> Result<usize, LinkError> {
        if !self.out.is_empty() {
            self.write(self.out.len())?;
        }
        if self.input.is_empty() {
            // Short waits, so a disconnect is seen even while nothing is expected.
            let wait = wait.min(Duration::from_millis(500));
            let stream = &mut self.notifications;
            let got = self
                .rt
                .block_on(async { tokio::time::timeout(wait, stream.next()).await });
            match got {
                Ok(Some(n)) if n.uuid == Uuid::from_u128(BLE_TX_CHARACTERISTIC) => {
                    self.input = n.value;
                }
                Ok(Some(_)) => return Ok(0),
                Ok(None) => {
                    return Err(LinkError::Closed(format!("{} disconnected", self.id)));
                }
                Err(_) => {
                    let up = self
                        .rt
                        .block_on(self.peripheral.is_connected())
                        .unwrap_or(false);
                    if !up {
                        return Err(LinkError::Closed(format!("{} disconnected", self.id)));
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }

    fn max_frame(&self) -> usize {
        // Frames are carried as a byte stream across writes, whatever the MTU.
        4096
    }

    fn name(&self) -> String {
        format!("Bluetooth LE device {}", self.id)
    }

    fn failure(&self, message: String) -> HostError {
        HostError::Bluetooth {
            device: self.id.clone(),
            message,
        }
    }
}

impl Drop for BleLink {
    fn drop(&mut self) {
        let p = &self.peripheral;
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(3), p.disconnect()).await });
        // The D-Bus streams unregister themselves on drop, which needs the runtime.
        let _inside = self.rt.enter();
        self.notifications = Box::pin(futures::stream::empty());
    }
}

/// The ATT MTU BlueZ negotiated with `address` (btleplug has no call for it): the `MTU`
/// property of the device's RX characteristic, read over the system D-Bus.
#[cfg(target_os = "linux")]
fn att_mtu(address: &str) -> Option<usize> {
    use dbus::arg::RefArg;
    use dbus::blocking::stdintf::org_freedesktop_dbus::ObjectManager;
    let conn = dbus::blocking::Connection::new_system().ok()?;
    let root = conn.with_proxy("org.bluez", "/", Duration::from_secs(2));
    let objects = root.get_managed_objects().ok()?;
    let dev = objects.iter().find_map(|(path, ifaces)| {
        let a = ifaces
            .get("org.bluez.Device1")?
            .get("Address")?
            .0
            .as_str()?;
        a.eq_ignore_ascii_case(address).then(|| path.to_string())
    })?;
    let rx = Uuid::from_u128(BLE_RX_CHARACTERISTIC).to_string();
    objects.iter().find_map(|(path, ifaces)| {
        if !path.starts_with(&format!("{dev}/")) {
            return None;
        }
        let c = ifaces.get("org.bluez.GattCharacteristic1")?;
        if !c.get("UUID")?.0.as_str()?.eq_ignore_ascii_case(&rx) {
            return None;
        }
        usize::try_from(c.get("MTU")?.0.as_u64()?).ok()
    })
}

#[cfg(not(target_os = "linux"))]
fn att_mtu(_address: &str) -> Option<usize> {
    None
}

impl BleConnector {
    /// Find the device `id` (address or advertised name). A device BlueZ already knows (it
    /// was connected before) is taken as it is: connecting waits for its advertising, and
    /// some advertisements repeat nothing BlueZ would report again.
    async fn find(&self, adapter: &Adapter, id: &str) -> Result<Peripheral, HostError> {
        let all = || ScanFilter { services: vec![] };
        adapter
            .start_scan(all())
            .await
            .map_err(|e| HostError::BluetoothOff(e.to_string()))?;
        let until = Instant::now() + self.scan_for;
        let mut restart = Instant::now() + Duration::from_secs(3);
        loop {
            for p in adapter.peripherals().await.map_err(no_bluetooth)? {
                let Ok(Some(props)) = p.properties().await else {
                    continue;
                };
                if props.address.to_string().eq_ignore_ascii_case(id)
                    || props.local_name.as_deref() == Some(id)
                {
                    let _ = adapter.stop_scan().await;
                    return Ok(p);
                }
            }
            let now = Instant::now();
            if now >= until {
                let _ = adapter.stop_scan().await;
                return Err(HostError::NotFound {
                    id: id.to_string(),
                    secs: self.scan_for.as_secs(),
                });
            }
            if now >= restart {
                // Some controllers report an advertiser only when a scan starts.
                let _ = adapter.stop_scan().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = adapter.start_scan(all()).await;
                restart = Instant::now() + Duration::from_secs(3);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Scan for the device `id` (its address, or its advertised name), connect, subscribe.
    pub fn connect(&self, id: &str) -> Result<BleLink, HostError> {
        let rt = runtime()?;
        let lost = |e: btleplug::Error| HostError::Bluetooth {
            device: id.to_string(),
            message: e.to_string(),
        };
        let (manager, peripheral, rx_char, notifications) = rt.block_on(async {
            let manager = Manager::new().await.map_err(no_bluetooth)?;
            let adapter = pick_adapter(&manager, self.adapter.as_deref()).await?;
            let p = self.find(&adapter, id).await?;
            tokio::time::timeout(Duration::from_secs(15), p.connect())
                .await
                .map_err(|_| HostError::Bluetooth {
                    device: id.to_string(),
                    message: "it did not accept the connection within 15 s".into(),
                })?
                .map_err(lost)?;
            p.discover_services().await.map_err(lost)?;
            let chars = p.characteristics();
            let find = |u: u128| {
                chars
                    .iter()
                    .find(|c| c.uuid == Uuid::from_u128(u))
                    .cloned()
                    .ok_or_else(|| HostError::Device(format!(
                        "{id} has no BlueSphere characteristic {}: it does not run the BlueSphere service",
                        Uuid::from_u128(u)
                    )))
            };
            let rx = find(BLE_RX_CHARACTERISTIC)?;
            let tx = find(BLE_TX_CHARACTERISTIC)?;
            let notifications = p.notifications().await.map_err(lost)?;
            p.subscribe(&tx).await.map_err(lost)?;
            Ok::<_, HostError>((manager, p, rx, notifications))
        })?;
        let address = rt
            .block_on(peripheral.properties())
            .ok()
            .flatten()
            .map(|p| p.address.to_string())
            .unwrap_or_else(|| id.to_string());
        // Writes of up to 244 bytes (ATT MTU 247): one link-layer packet each with the Data
        // Length Extension. Larger ATT MTUs (BlueZ offers 517) only split each write over
        // several link-layer packets, and some controllers lose such writes without response
        // (seen with BlueZ's emulated controllers).
        let mtu = att_mtu(&address).unwrap_or(23).clamp(23, 247);
        Ok(BleLink {
            rt,
            _manager: manager,
            peripheral,
            rx_char,
            notifications,
            payload: mtu - 3,
            out: Vec::new(),
            input: Vec::new(),
            id: id.to_string(),
        })
    }
}

impl Connector for BleConnector {
    type Link = BleLink;

    fn list(&self) -> Result<Vec<DeviceEntry>, HostError> {
        Ok(scan_on(self.adapter.as_deref(), self.scan_for)?
            .into_iter()
            .map(|d| DeviceEntry {
                address: Address::Ble(d.id),
                kind: "bluetooth".into(),
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: d.name,
            })
            .collect())
    }

    fn open(&self, address: &Address) -> Result<BleLink, HostError> {
        match address {
            Address::Ble(id) => self.connect(id),
            other => Err(HostError::NoPort(other.to_string())),
        }
    }
}
