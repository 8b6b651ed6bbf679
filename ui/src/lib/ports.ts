// Finding "the same device" again. A USB-serial adapter that is reset or replugged may come
// back under another path (/dev/ttyUSB0 -> /dev/ttyUSB1); its USB serial number stays.
import type { Address } from "./bindings/Address";
import type { DeviceEntry } from "./bindings/DeviceEntry";

/** How to reach the device at `path`: by its USB serial number when it has one (the host
 * then reopens whatever path it has now, also when a push reconnects), else by the path. */
export function addressFor(ports: DeviceEntry[], path: string): Address {
  const e = ports.find((p) => p.address.id === path);
  if (e?.serial_number) return { transport: "usb-serial-number", id: e.serial_number };
  return { transport: "serial", id: path };
}

/** After the port list changed: where the device chosen as `path` (USB serial number
 * `serial`, if it had one) is now. `moved` when it came back under another path, `gone`
 * when it is not in the list (a typed path that is not listed, such as a pseudo-terminal,
 * is never "gone": the OS does not list those). */
export function refind(
  ports: DeviceEntry[],
  path: string,
  serial: string | null,
): { path: string; moved: boolean; gone: boolean } {
  if (ports.some((p) => p.address.id === path)) return { path, moved: false, gone: false };
  const back = serial ? ports.find((p) => p.serial_number === serial) : undefined;
  if (back) return { path: back.address.id, moved: true, gone: false };
  return { path, moved: false, gone: serial !== null };
}
