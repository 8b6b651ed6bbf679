// Before the first paint: the theme the user chose, else the OS's, on <html data-theme>, so a
// dark desktop never sees a light flash. The app keeps it up to date afterwards (App.svelte).
(function () {
  var theme = "system";
  try {
    theme = JSON.parse(localStorage.getItem("bluesphere-studio-settings") || "{}").theme || "system";
  } catch {
    // A damaged store: follow the OS.
  }
  var dark = theme === "dark" || (theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
})();
