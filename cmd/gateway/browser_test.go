package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Helpers for the browser tests: a headless Chromium driven with chromedp against the real
// gateway. Without Chromium the tests skip, unless GATEWAY_REQUIRE_BROWSER=1 (as in CI), which
// makes a missing browser a failure.

// chromiumPath returns the Chromium to drive, or skips the test when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("GATEWAY_REQUIRE_BROWSER") == "1" {
		t.Fatal("Chromium is not installed (looked for /usr/bin/chromium) and GATEWAY_REQUIRE_BROWSER=1: apt-get install -y chromium")
	}
	t.Skip("browser test skipped: Chromium is not installed (apt-get install -y chromium; set GATEWAY_REQUIRE_BROWSER=1 to make this a failure)")
	return ""
}

// startBrowser starts headless Chromium with a fresh profile and returns the browser's context;
// tabs are opened from it with newTab. The browser stops at test cleanup.
func startBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "gateway-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
		os.RemoveAll(profile)
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	return ctx
}

// artifactDir is where screenshots go: $GATEWAY_ARTIFACTS/console when set, else the test's
// artifact directory (kept with `go test -artifacts -outputdir DIR`).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := t.ArtifactDir()
	if env := os.Getenv("GATEWAY_ARTIFACTS"); env != "" {
		dir = filepath.Join(env, "console")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tab is one browser tab (its own sessionStorage, so its own signed-in client).
type tab struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	name  string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func newTab(t *testing.T, browser context.Context, base, shots, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	b := &tab{t: t, ctx: ctx, base: base, shots: shots, name: name}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs steps, failing the test (with a screenshot) on error.
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

func (b *tab) navigate(path string) {
	b.t.Helper()
	b.do("navigate to "+path, chromedp.Navigate(b.base+path))
}

// set gives a form control a value and fires its input and change events, as typing would.
// (chromedp.SetValue cannot set an empty value.)
func (b *tab) set(sel, value string) {
	b.t.Helper()
	var ok bool
	expr := fmt.Sprintf(`((el) => { if (!el) return false; el.value = %s;
		el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true})); return true; })(document.querySelector(%s))`, js(value), js(sel))
	if err := b.eval(expr, &ok); err != nil || !ok {
		b.fail("set %s to %q: no such control (%v)", sel, value, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into out.
func (b *tab) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// str evaluates an expression that yields a string.
func (b *tab) str(expr string) string {
	b.t.Helper()
	var s string
	if err := b.eval("String("+expr+")", &s); err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return s
}

// waitFor polls a JavaScript condition until it holds (20 s at most). chromedp's own Poll
// compiles its predicate with new Function, which the console's CSP (rightly) forbids, so the
// condition is evaluated from here.
func (b *tab) waitFor(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		err := b.eval("Boolean("+cond+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.fail("waiting for %s: condition %s never held (last error: %v)\npage text:\n%s", what, cond, err, b.pageText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitText waits until the element's text contains want.
func (b *tab) waitText(sel, want string) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("%s to say %q", sel, want),
		fmt.Sprintf(`(document.querySelector(%s)?.textContent || "").includes(%s)`, js(sel), js(want)))
}

func (b *tab) pageText() string {
	var s string
	if err := b.eval(`document.body ? document.body.innerText : ""`, &s); err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// openMessages opens the messages of a request shown in the tracking view (unless they are
// open already) and waits for them.
func (b *tab) openMessages(requestID string) {
	b.t.Helper()
	body := fmt.Sprintf(`document.querySelector('tbody[data-id=%s]')`, js(requestID))
	b.waitFor("request "+requestID+" in the list", body)
	if b.str(body+`.querySelector("button.toggle").getAttribute("aria-expanded")`) != "true" {
		b.do("open the messages", chromedp.Click(chromedp.CSS(`tbody[data-id="`+requestID+`"] button.toggle`)))
	}
	b.waitFor("the messages of request "+requestID, `!`+body+`.querySelector(".messages-row").hidden && `+
		body+`.querySelectorAll(".msgs tr[data-message]").length > 0`)
}

// shot saves a full-page screenshot as <shots>/<tab>-<name>.png.
func (b *tab) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.shots, b.name+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("write screenshot: %v", err)
	}
}

// fail saves a screenshot of the page as it is, then fails the test.
func (b *tab) fail(format string, args ...any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		path := filepath.Join(b.shots, b.name+"-FAILED.png")
		if os.WriteFile(path, png, 0o644) == nil {
			args = append(args, path)
			format += "\n(screenshot: %s)"
		}
	}
	b.t.Fatalf(format, args...)
}

// checkConsole fails on any script error or Content-Security-Policy violation the page
// reported. Failed requests (an API answering 4xx) are expected and not reported here.
func (b *tab) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy") {
			b.t.Errorf("%s tab: browser console: %s %s (%s:%d)", b.name, m.Type, m.Text, m.URL, m.Line+1)
		}
	}
}

// noSidewaysScroll checks that the page fits the viewport's width (on a phone: no scrolling
// sideways to read it).
func (b *tab) noSidewaysScroll(view string) {
	b.t.Helper()
	var w struct{ Page, Viewport int }
	if err := b.eval(`({Page: document.documentElement.scrollWidth, Viewport: window.innerWidth})`, &w); err != nil {
		b.fail("measure the page: %v", err)
	}
	if w.Page > w.Viewport {
		b.t.Errorf("%s view: the page is %d px wide in a %d px viewport", view, w.Page, w.Viewport)
	}
}

// unlabelledControls lists visible form controls without a label and buttons without a name.
const unlabelledControls = `(() => {
  const bad = [];
  const visible = (el) => !el.closest('[hidden]') && el.getClientRects().length > 0;
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!visible(el)) continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) bad.push(el.id || el.name || el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!visible(el)) continue;
    if (!el.textContent.trim() && !el.getAttribute('aria-label')) bad.push(el.outerHTML.slice(0, 80));
  }
  return bad;
})()`

func (b *tab) checkLabels(view string) {
	b.t.Helper()
	var bad []string
	if err := b.eval(unlabelledControls, &bad); err != nil {
		b.fail("check labels: %v", err)
	}
	if len(bad) > 0 {
		b.t.Errorf("%s view: controls without a label or name: %q", view, bad)
	}
}

// js quotes a Go value for a JavaScript expression.
func js(v any) string {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(out)
}
