import { describe, expect, it } from "vitest";
import { count, hex32, percent, seconds, size, speed } from "./format";

describe("format", () => {
  it("shows sizes two ways", () => {
    expect(size(1186)).toBe("1.2 KiB (1,186 bytes)");
    expect(size(512)).toBe("512 bytes");
    expect(size(3 * 1024 * 1024)).toBe("3.0 MiB (3,145,728 bytes)");
  });
  it("rounds percentages to one decimal", () => {
    expect(percent(1186, 65820)).toBe("1.8 %");
    expect(percent(1, 0)).toBe("0.0 %");
  });
  it("reads times and speeds at a glance", () => {
    expect(seconds(0.114)).toBe("0.11 s");
    expect(seconds(5.84)).toBe("5.8 s");
    expect(seconds(125)).toBe("2 min 05 s");
    expect(speed(11468.8)).toBe("11.2 KiB/s");
    expect(count(41203)).toBe("41,203");
    expect(hex32(0x08000000)).toBe("0x08000000");
  });
});
