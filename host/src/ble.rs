//! Bluetooth LE central (btleplug): find devices that advertise the near-field service
//! (`docs/PROTOCOL.md` section 6). A computer without Bluetooth gets
//! [`HostError::NoBluetooth`], never a crash.

use std::time::{Duration, Instant};

use bluesphere_core::proto::BLE_SERVICE;
use btleplug::api::{Central, Manager as _, Peripheral as _, ScanFilter};
use btleplug::platform::Manager;
use uuid::Uuid;

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

fn no_bluetooth(e: impl std::fmt::Display) -> HostError {
    let m = e.to_string();
    // Linux: btleplug talks to BlueZ over the system D-Bus; without it there is no Bluetooth.
    if m.contains("system_bus_socket") || m.contains("org.bluez") || m.contains("ServiceUnknown") {
        return HostError::NoBluetooth(format!(
            "no Bluetooth service (BlueZ) runs on this computer ({m})"
        ));
    }
    HostError::NoBluetooth(m)
}

/// Scan for `timeout`: the devices that advertise the BlueSphere service, strongest first.
pub fn scan(timeout: Duration) -> Result<Vec<BleDevice>, HostError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(no_bluetooth)?;
    rt.block_on(async {
        let manager = Manager::new().await.map_err(no_bluetooth)?;
        let adapter = manager
            .adapters()
            .await
            .map_err(no_bluetooth)?
            .into_iter()
            .next()
            .ok_or_else(|| no_bluetooth("no Bluetooth adapter on this computer"))?;
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
