import { describe, expect, it } from "vitest";
import type { DeviceEntry } from "./bindings/DeviceEntry";
import { addressFor, refind } from "./ports";

const usb = (path: string, sn: string | null): DeviceEntry => ({
  address: { transport: "serial", id: path },
  kind: "usb",
  vid: 0x0403,
  pid: 0x6001,
  serial_number: sn,
  manufacturer: "FTDI",
  product: "FT232R",
});

describe("ports", () => {
  it("addresses a USB adapter by its serial number, anything else by path", () => {
    const ports = [usb("/dev/ttyUSB0", "A10K3"), usb("/dev/ttyACM0", null)];
    expect(addressFor(ports, "/dev/ttyUSB0")).toEqual({ transport: "usb-serial-number", id: "A10K3" });
    expect(addressFor(ports, "/dev/ttyACM0")).toEqual({ transport: "serial", id: "/dev/ttyACM0" });
    expect(addressFor(ports, "/dev/pts/4")).toEqual({ transport: "serial", id: "/dev/pts/4" });
  });
  it("follows a replugged adapter to its new path", () => {
    const before = [usb("/dev/ttyUSB0", "A10K3")];
    expect(refind(before, "/dev/ttyUSB0", "A10K3")).toEqual({ path: "/dev/ttyUSB0", moved: false, gone: false });
    // Unplugged: gone, path kept.
    expect(refind([], "/dev/ttyUSB0", "A10K3")).toEqual({ path: "/dev/ttyUSB0", moved: false, gone: true });
    // Back under another name, next to another adapter.
    const after = [usb("/dev/ttyUSB0", "ZZ999"), usb("/dev/ttyUSB1", "A10K3")];
    expect(refind(after, "/dev/ttyUSB0", "A10K3")).toEqual({ path: "/dev/ttyUSB0", moved: false, gone: false });
    expect(refind([usb("/dev/ttyUSB1", "A10K3")], "/dev/ttyUSB0", "A10K3")).toEqual({
      path: "/dev/ttyUSB1",
      moved: true,
      gone: false,
    });
  });
  it("never calls a typed pseudo-terminal gone", () => {
    expect(refind([], "/dev/pts/3", null)).toEqual({ path: "/dev/pts/3", moved: false, gone: false });
  });
});
