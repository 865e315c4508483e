//! A real browser for the channel-page tests: headless Chromium driven
//! through the DevTools protocol over `--remote-debugging-pipe` (JSON
//! messages ending in NUL on file descriptors 3 and 4, which a shell
//! wrapper connects to the child's stdin and stdout). It loads pages,
//! clicks, types and presses keys as a person does, reads what the page
//! shows, and keeps screenshots under `target/tmp/browser/`.
//!
//! Without Chromium the tests say so and pass, unless
//! `AUH_REQUIRE_BROWSER=1` (CI sets it, and installs Debian's
//! `chromium`); `AUH_CHROMIUM` names another binary.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// How long one step may take before the test fails.
const STEP: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    input: ChildStdin,
    messages: Receiver<Value>,
    /// Events that arrived while waiting for an answer.
    events: Vec<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// The Chromium binary to use, if there is one.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AUH_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// A headless Chromium with one blank tab, or `None` (the test skips)
    /// when none is installed and none is required.
    pub fn launch() -> Option<Self> {
        let Some(binary) = chromium() else {
            assert!(
                std::env::var("AUH_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "AUH_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)"
            );
            eprintln!("no chromium installed: skipping the browser test");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        #[allow(clippy::zombie_processes)] // Drop kills and waits for it
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 1>/dev/null 0</dev/null"#)
            .arg(&binary)
            .args([
                "--headless=new",
                "--no-sandbox", // CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--ignore-certificate-errors", // the test server's own certificate
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1280,1000",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(output);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice(&message) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Self {
            child,
            input,
            messages,
            events: Vec::new(),
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.send(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.send(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        Some(browser)
    }

    /// Sends one command (to the tab when `session` is given) and returns
    /// its result.
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).unwrap();
        self.input.flush().unwrap();
        let deadline = Instant::now() + STEP;
        loop {
            let message = self.receive(deadline, method);
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    fn receive(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => panic!("chromium: no {waiting_for} within {STEP:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("chromium exited"),
        }
    }

    /// A command to the tab.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Runs `action`, then waits until the page it leads to has loaded.
    fn and_wait_for_load(&mut self, action: impl FnOnce(&mut Self)) {
        self.events.clear();
        action(self);
        let deadline = Instant::now() + STEP;
        let loaded = |event: &Value| event["method"] == "Page.loadEventFired";
        if self.events.iter().any(loaded) {
            return;
        }
        while !loaded(&self.receive(deadline, "Page.loadEventFired")) {}
    }

    /// Opens `url` and waits until it has loaded.
    pub fn open(&mut self, url: &str) {
        self.and_wait_for_load(|browser| {
            let navigated = browser.call("Page.navigate", json!({"url": url}));
            assert!(navigated.get("errorText").is_none(), "{url}: {navigated}");
        });
    }

    /// The value of a JavaScript expression on the page (to read it, as
    /// a person would look at it).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// The text the page shows.
    pub fn text(&mut self) -> String {
        self.evaluate("document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's address now.
    pub fn location(&mut self) -> String {
        self.evaluate("location.href").as_str().unwrap().to_owned()
    }

    /// Clicks the middle of what `find` (an expression giving an element)
    /// finds, with the mouse.
    fn click_element(&mut self, find: &str) {
        let point = self.evaluate(&format!(
            "(() => {{ const e = {find}; if (!e) return null; e.scrollIntoView(); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = match point.as_array().map(Vec::as_slice) {
            Some([x, y]) => (x.as_f64().unwrap(), y.as_f64().unwrap()),
            _ => panic!("nothing on the page matches {find}"),
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Clicks into the element `selector` selects.
    pub fn click(&mut self, selector: &str) {
        self.click_element(&format!("document.querySelector({})", json!(selector)));
    }

    /// Clicks the link whose text is `text` and waits for its page.
    pub fn follow_link(&mut self, text: &str) {
        let find = format!(
            "[...document.querySelectorAll('a')].find(a => a.textContent.trim() === {})",
            json!(text)
        );
        self.and_wait_for_load(|browser| browser.click_element(&find));
    }

    /// Types `text` where the focus is.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Presses Enter and waits for the page it leads to.
    pub fn press_enter(&mut self) {
        self.and_wait_for_load(|browser| {
            for kind in ["keyDown", "keyUp"] {
                let mut key = json!({"type": kind, "key": "Enter", "code": "Enter",
                    "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13});
                if kind == "keyDown" {
                    key["text"] = json!("\r");
                }
                browser.call("Input.dispatchKeyEvent", key);
            }
        });
    }

    /// Saves what the page looks like as `target/tmp/browser/NAME.png`
    /// and returns the path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
