//! A small W3C WebDriver client (blocking HTTP) for the Studio's end-to-end suite: sessions,
//! elements, clicks, typing, keys, scripts and screenshots; enough for `tauri-driver`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session.
#[derive(Debug)]
pub struct Session {
    base: String,
    id: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let req = ureq::request(method, url).timeout(Duration::from_secs(120));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let v: Value = match r {
        Ok(resp) => resp.into_json().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, resp)) => {
            let v: Value = resp.into_json().unwrap_or(Value::Null);
            return Err(format!(
                "HTTP {code}: {} {}",
                v["value"]["error"], v["value"]["message"]
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    Ok(v["value"].clone())
}

impl Session {
    /// Start a session on the driver at `base` for the app at `application`.
    pub fn start(base: &str, application: &str) -> Result<Session, String> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application}
        }}});
        let v = call("POST", &format!("{base}/session"), Some(caps))?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?
            .to_string();
        Ok(Session {
            base: base.to_string(),
            id,
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/session/{}{tail}", self.base, self.id)
    }

    /// Run a script in the page; returns its value.
    pub fn script(&self, body: &str, args: Vec<Value>) -> Result<Value, String> {
        call(
            "POST",
            &self.url("/execute/sync"),
            Some(json!({"script": body, "args": args})),
        )
    }

    /// Run an asynchronous script (its last argument is the callback).
    pub fn script_async(&self, body: &str, args: Vec<Value>) -> Result<Value, String> {
        call(
            "POST",
            &self.url("/execute/async"),
            Some(json!({"script": body, "args": args})),
        )
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Result<Element, String> {
        let v = call(
            "POST",
            &self.url("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(|s| Element(s.to_string()))
            .ok_or_else(|| format!("no element {css}: {v}"))
    }

    /// Wait until an element matching `css` exists (or fail after `secs`).
    pub fn wait_for(&self, css: &str, secs: u64) -> Result<Element, String> {
        let t = Instant::now();
        loop {
            match self.find(css) {
                Ok(e) => return Ok(e),
                Err(e) if t.elapsed() > Duration::from_secs(secs) => {
                    return Err(format!("waited {secs} s for {css}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Scroll `e` to the middle of the view.
    fn to_middle(&self, e: &Element) -> Result<(), String> {
        self.script(
            "arguments[0].scrollIntoView({block: 'center'})",
            vec![json!({ ELEMENT: e.0 })],
        )?;
        Ok(())
    }

    /// Click, as a user would: the element brought to the middle of the view first (the
    /// driver's own scrolling puts it at the bottom edge, under the status bar), and asked
    /// again for up to 5 s while the page still moves (a page switch, an opening section).
    pub fn click(&self, e: &Element) -> Result<(), String> {
        let t = Instant::now();
        loop {
            self.to_middle(e)?;
            match call(
                "POST",
                &self.url(&format!("/element/{}/click", e.0)),
                Some(json!({})),
            ) {
                Ok(_) => return Ok(()),
                Err(m) if m.starts_with("HTTP 400") && t.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(m) => {
                    // What the page looked like to the driver: the element's box, the view,
                    // and what is at the element's centre.
                    let seen = self
                        .script(
                            "const e = arguments[0], r = e.getBoundingClientRect();
                             const x = r.left + r.width / 2, y = r.top + r.height / 2;
                             const at = document.elementFromPoint(x, y);
                             return JSON.stringify({box: [r.left, r.top, r.width, r.height],
                               view: [innerWidth, innerHeight],
                               display: getComputedStyle(e).display,
                               visibility: getComputedStyle(e).visibility,
                               at: at ? at.outerHTML.slice(0, 160) : null,
                               active: document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : null})",
                            vec![json!({ ELEMENT: e.0 })],
                        )
                        .map(|v| v.to_string())
                        .unwrap_or_else(|e| e);
                    return Err(format!("{m} (page: {seen})"));
                }
            }
        }
    }

    /// Clear a field and type into it.
    pub fn fill(&self, css: &str, text: &str) -> Result<(), String> {
        let e = self.find(css)?;
        // Typing needs the field in view (not under the status bar), as a user would see it.
        self.to_middle(&e)?;
        call(
            "POST",
            &self.url(&format!("/element/{}/clear", e.0)),
            Some(json!({})),
        )?;
        call(
            "POST",
            &self.url(&format!("/element/{}/value", e.0)),
            Some(json!({"text": text})),
        )?;
        Ok(())
    }

    /// Visible text.
    pub fn text(&self, e: &Element) -> Result<String, String> {
        let v = call("GET", &self.url(&format!("/element/{}/text", e.0)), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Press keys on whatever has focus (`\u{E004}` Tab, `\u{E007}` Enter, `\u{E009}` Ctrl).
    pub fn keys(&self, keys: &[&str]) -> Result<(), String> {
        let mut down = Vec::new();
        for k in keys {
            for c in k.chars() {
                down.push(json!({"type": "keyDown", "value": c.to_string()}));
                down.push(json!({"type": "keyUp", "value": c.to_string()}));
            }
        }
        call(
            "POST",
            &self.url("/actions"),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": down}]})),
        )?;
        Ok(())
    }

    /// A chord: `mods` held while `key` is pressed.
    pub fn chord(&self, mods: &[&str], key: &str) -> Result<(), String> {
        let mut a = Vec::new();
        for m in mods {
            a.push(json!({"type": "keyDown", "value": m}));
        }
        a.push(json!({"type": "keyDown", "value": key}));
        a.push(json!({"type": "keyUp", "value": key}));
        for m in mods.iter().rev() {
            a.push(json!({"type": "keyUp", "value": m}));
        }
        call(
            "POST",
            &self.url("/actions"),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": a}]})),
        )?;
        call("DELETE", &self.url("/actions"), None)?;
        Ok(())
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let v = call("GET", &self.url("/screenshot"), None)?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    /// End the session (closes the app).
    pub fn end(self) {
        let _ = call("DELETE", &self.url(""), None);
    }
}
