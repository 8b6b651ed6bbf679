// Files dropped on the window go to the path field under the pointer (each field is marked
// with `data-drop-target`), so two drop zones are told apart by where the drop lands.
import { getCurrentWebview } from "@tauri-apps/api/webview";

export async function routeDrops(set: (target: string, path: string) => void): Promise<() => void> {
  try {
    return await getCurrentWebview().onDragDropEvent((ev) => {
      if (ev.payload.type !== "drop") return;
      const ratio = window.devicePixelRatio || 1;
      const { x, y } = ev.payload.position;
      const el = document.elementFromPoint(x / ratio, y / ratio);
      const target = el?.closest<HTMLElement>("[data-drop-target]")?.dataset.dropTarget;
      const path = ev.payload.paths[0];
      if (target && path) set(target, path);
    });
  } catch {
    // Outside Tauri (unit tests): no drops.
    return () => {};
  }
}
