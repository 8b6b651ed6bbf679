import { describe, expect, it, vi } from "vitest";

// The page talks to Rust only through `invoke`; here it is mocked.
const calls: Array<[string, unknown]> = [];
vi.mock("@tauri-apps/api/core", () => ({
  invoke: vi.fn(async (cmd: string, args: unknown) => {
    calls.push([cmd, args]);
    if (cmd === "inspect") throw { kind: "not-a-package", message: "x.bin: not a BlueSphere package", hint: "" };
    return { ok: true };
  }),
  Channel: class {
    onmessage: ((e: unknown) => void) | null = null;
  },
}));

describe("ipc", () => {
  it("passes requests by name and turns rejections into API errors", async () => {
    const { api, asApiError } = await import("./ipc");
    await api.pack(
      { new: "n.bin", old: null, key: "k.pem", out: "p.bsp", product: "p", hardware: "h", component: "main", from_version: "1.0.0", to_version: "1.1.0", counter: 0, load_address: null, depends: [], profile: "best", block_kib: null, format: "auto", range: null },
      null,
      () => {},
      () => {},
    );
    expect(calls[0][0]).toBe("pack");
    expect((calls[0][1] as { job: number }).job).toBeGreaterThan(0);
    const e = await api.inspect({ package: "x.bin", public: [] }).catch(asApiError);
    expect(e).toEqual({ kind: "not-a-package", message: "x.bin: not a BlueSphere package", hint: "" });
    expect(asApiError("boom")).toEqual({ kind: "internal", message: "boom", hint: "" });
  });
});
