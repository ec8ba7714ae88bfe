package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/tidwall/gjson"
)

// TestConsole drives the web console in headless Chromium against the real gateway: client
// demo signs in, data is pushed through the API as a partner's program would, and the console
// shows it turn Complete, opens a message's errors, replays, dry-runs records in the
// playground, draws the overview and manages integrations. Then client other signs in, in a
// tab of its own, and sees none of demo's data on any page. Every page is screenshotted.
func TestConsole(t *testing.T) {
	const demoHub = "5f3c1a2e-0d4b-4e8a-9c1f-2a6b7d8e9f01" // client demo's hub in examples/gateway.yaml
	chromium := chromiumPath(t)
	g := startGateway(t, exampleConfig, t.TempDir())
	shots := artifactDir(t)
	t.Logf("screenshots in %s", shots)
	browser := startBrowser(t, chromium)

	version := activityVersion(t, g)
	demo := newTab(t, browser, g.URL, shots, "demo")
	defer func() {
		demo.t = t
		demo.checkConsole()
	}()

	// Each step builds on the ones before: after a failure the rest are skipped, not timed out.
	failed := false
	step := func(name string, f func(t *testing.T)) {
		if failed {
			t.Run(name, func(t *testing.T) { t.Skip("skipped: an earlier step failed") })
			return
		}
		failed = !t.Run(name, f)
	}

	step("SignIn", func(t *testing.T) {
		demo.t = t
		demo.navigate("/console") // redirected to /console/
		demo.waitFor("the sign-in page", `location.pathname === "/console/" && !document.querySelector("#view-signin").hidden`)
		demo.checkLabels("sign-in")
		demo.shot("01-sign-in")
		// The client id has focus; Tab goes to the secret, then to the button.
		var order []string
		for range 3 {
			order = append(order, demo.str(`document.activeElement.id || document.activeElement.textContent`))
			demo.do("press Tab", chromedp.KeyEvent(kb.Tab))
		}
		if want := []string{"signin-id", "signin-secret", "Sign in"}; !slices.Equal(order, want) {
			t.Errorf("tab order %q, want %q", order, want)
		}
		// Enter submits; a wrong secret is refused with a message.
		demo.do("type wrong credentials", chromedp.SendKeys(chromedp.ID("signin-id"), "demo"),
			chromedp.SendKeys(chromedp.ID("signin-secret"), "wrong-secret\r"))
		demo.waitText("#signin-error", "wrong secret")
		demo.set("#signin-secret", "")
		demo.do("type the secret", chromedp.SendKeys(chromedp.ID("signin-secret"), "demo-secret\r"))
		demo.waitFor("the overview after sign-in", `!document.querySelector("#view-overview").hidden`)
		if who := demo.str(`document.querySelector("#who-name").textContent`); who != "Signed in as demo" {
			t.Errorf("header says %q", who)
		}
		// The token is kept for this tab only, and no credential is ever in the URL.
		if tok := demo.str(`JSON.parse(sessionStorage.getItem("gateway-console.session")).token`); strings.Count(tok, ".") != 2 {
			t.Errorf("sessionStorage holds %q, want a JWT", tok)
		}
		if n := demo.str(`localStorage.length`); n != "0" {
			t.Errorf("localStorage holds %s items; the token must stay in sessionStorage", n)
		}
		if u := demo.str(`location.href`); strings.Contains(u, "secret") || strings.Contains(u, "token") {
			t.Errorf("URL %s carries a credential", u)
		}
	})

	var reqID string
	step("Tracking", func(t *testing.T) {
		demo.t = t
		demo.do("open tracking", chromedp.Click(chromedp.CSS(`#nav a[data-view="tracking"]`)))
		demo.waitFor("the tracking view", `!document.querySelector("#view-tracking").hidden && document.activeElement.id === "tracking-h"`)
		demo.checkLabels("tracking")

		// Pushed through the API while the console is open.
		reqID = g.push(t, []byte(`{"format":"activity","request_id":"console-batch-1","payload":[
			{"id":"cons-call-1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"A@B.C","contact":"+4512345678","direction":"inbound"},
			{"id":"cons-quote-1","type":"quote","timestamp":"2020-05-18T21:20:00Z","user_email":"a@b.c","contact":"Jane","product_line":"fire","product":"Renter","amount":12.5,"href":"https://q.example/1"},
			{"id":"cons-bad-1","type":"email","timestamp":"2020-05-18T21:15:00Z"}]}`))
		demo.do("search by request id", chromedp.SendKeys(chromedp.ID("t-id"), reqID+"\r"))
		row := fmt.Sprintf(`document.querySelector('tbody[data-id=%s]')`, js(reqID))
		demo.waitFor("the request's row", row)
		t.Logf("request first shown as %s", demo.str(row+`.dataset.requestStatus`))
		demo.waitFor("the request to turn Complete", row+`.dataset.requestStatus === "Complete"`)
		if got := demo.str(row + `.querySelector(".summary-text").textContent`); got != "2 complete, 1 invalid (3 records)" {
			t.Errorf("summary reads %q", got)
		}
		if got := demo.str(row + `.querySelector("svg.bar").getAttribute("aria-label")`); got != "2 complete, 1 invalid (3 records)" {
			t.Errorf("status bar is labelled %q", got)
		}
		if demo.str(row+`.querySelectorAll("svg.bar rect.st-complete, svg.bar rect.st-invalid").length`) != "2" {
			t.Errorf("status bar segments: %s", demo.str(row+`.querySelector("svg.bar").outerHTML`))
		}
		if demo.str(row+`.querySelector("button.cancel").disabled`) != "true" {
			t.Error("Cancel is enabled for a request with nothing queued")
		}

		// Open the messages and the invalid one's errors with the keyboard.
		demo.do("open the messages", chromedp.Focus(chromedp.CSS(`tbody[data-id="`+reqID+`"] button.toggle`)), chromedp.KeyEvent(kb.Enter))
		demo.waitFor("three messages", row+`.querySelectorAll(".msgs tr[data-message]").length === 3`)
		invalid := row + `.querySelector('.msgs tr[data-status="Invalid"]')`
		demo.do("open the errors", chromedp.Focus(chromedp.CSS(`tbody[data-id="`+reqID+`"] tr[data-status="Invalid"] details.errors summary`)), chromedp.KeyEvent(kb.Enter))
		demo.waitFor("the errors to open", invalid+`.querySelector("details.errors").open`)
		errText := demo.str(invalid + `.querySelector("details.errors ol").textContent`)
		if want := "type must be call or quote (mapping activity@" + version + ")"; !strings.Contains(errText, want) {
			t.Errorf("errors read %q, want %q", errText, want)
		}
		if got := demo.str(invalid + `.querySelector("td.mapping").textContent`); got != "activity@"+version {
			t.Errorf("mapping version column reads %q, want activity@%s", got, version)
		}
		if got := demo.str(invalid + `.querySelector("code").textContent`); got != "cons-bad-1" {
			t.Errorf("external reference reads %q", got)
		}
		demo.shot("02-tracking-errors")

		// Criteria: external reference with status, message type; a type nobody sent finds nothing.
		search := func(what string, fill ...chromedp.Action[chromedp.Void]) {
			t.Helper()
			demo.do("clear the search", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)))
			demo.do(what, append(fill, chromedp.Click(chromedp.CSS(`#tracking-form button[type=submit]`)))...)
		}
		search("search by external reference and status", chromedp.SendKeys(chromedp.ID("t-ext"), "cons-bad-1"),
			chromedp.Click(chromedp.CSS(`input[name=status][value=Invalid]`)))
		demo.waitFor("the request found by reference", `document.querySelectorAll("tbody.request").length === 1 && `+row)
		search("search by message type", chromedp.SendKeys(chromedp.ID("t-type"), "visit"))
		demo.waitText("#t-results", "No requests match")
		search("search by message type", chromedp.SendKeys(chromedp.ID("t-type"), "quote, visit"))
		demo.waitFor("the request found by type", row)
		search("search by batch reference", chromedp.SendKeys(chromedp.ID("t-batch"), "console-batch-1"))
		demo.waitFor("the request found by batch reference", `document.querySelectorAll("tbody.request").length === 1 && `+row)
		demo.do("clear the search", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)))
		demo.set("#t-range", "custom")
		demo.waitFor("the custom range fields", `!document.querySelector("#t-from").closest("[hidden]")`)
		demo.set("#t-from", "2020-01-01T00:00:00")
		demo.set("#t-to", "2020-01-02T00:00:00")
		demo.do("search a custom range that excludes today", chromedp.Click(chromedp.CSS(`#tracking-form button[type=submit]`)))
		demo.waitText("#t-results", "No requests match")
	})

	step("Replay", func(t *testing.T) {
		demo.t = t
		demo.do("show the request", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)),
			chromedp.SendKeys(chromedp.ID("t-id"), reqID+"\r"))
		row := fmt.Sprintf(`document.querySelector('tbody[data-id=%s]')`, js(reqID))
		demo.waitFor("the request's row", row+`?.dataset.requestStatus === "Complete"`)
		demo.do("replay it", chromedp.Click(chromedp.CSS(`tbody[data-id="`+reqID+`"] button.replay`)))
		demo.waitText("#t-message", "Replayed 1 message of request "+reqID)
		demo.waitFor("the replayed request to complete again", row+`.dataset.requestStatus === "Complete" && `+
			row+`.querySelector(".summary-text").textContent === "2 complete, 1 invalid (3 records)"`)
		demo.openMessages(reqID)
		// It ran again: its earlier error stays, and the new run's follows.
		demo.waitText(`tbody[data-id="`+reqID+`"] tr[data-status="Invalid"] details.errors summary`, "2 errors")
		if got := demo.str(row + `.querySelector('.msgs tr[data-status="Invalid"] details.errors ol').textContent`); strings.Count(got, "type must be call or quote") != 2 {
			t.Errorf("errors after replay read %q", got)
		}
		demo.shot("03-replayed")

		// Replay by search: every Invalid message the search finds (press twice to confirm).
		demo.do("search the invalid messages", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)),
			chromedp.Click(chromedp.CSS(`input[name=status][value=Invalid]`)),
			chromedp.Click(chromedp.ID("t-replay-search")))
		demo.waitText("#t-replay-search", "Press again")
		demo.do("confirm", chromedp.Click(chromedp.ID("t-replay-search")))
		demo.waitText("#t-message", "Replayed 1 message of this search")
		demo.do("show the request", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)),
			chromedp.SendKeys(chromedp.ID("t-id"), reqID+"\r"))
		demo.openMessages(reqID)
		demo.waitText(`tbody[data-id="`+reqID+`"] tr[data-status="Invalid"] details.errors summary`, "3 errors")
		if got := demo.str(row + `.querySelector(".summary-text").textContent`); got != "2 complete, 1 invalid (3 records)" {
			t.Errorf("after replaying the search the summary reads %q", got)
		}
	})

	step("Paging", func(t *testing.T) {
		demo.t = t
		for i := range 11 {
			g.push(t, []byte(fmt.Sprintf(`{"format":"activity","payload":[{"id":"page-%d","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"}]}`, i)))
		}
		demo.do("clear the search", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)))
		demo.set("#t-size", "10")
		demo.set("#t-order", "asc")
		demo.do("search oldest first, 10 a page", chromedp.Click(chromedp.CSS(`#tracking-form button[type=submit]`)))
		demo.waitText("#t-page", "Page 1 of 2 · 12 requests")
		received := `[...document.querySelectorAll("tbody.request > tr:first-child > td:first-child time")].map((t) => t.getAttribute("datetime"))`
		var page1, page2 []string
		if err := demo.eval(received, &page1); err != nil || len(page1) != 10 {
			t.Fatalf("page 1 shows %v (%v), want 10 requests", page1, err)
		}
		demo.do("next page", chromedp.Click(chromedp.ID("t-next")))
		demo.waitText("#t-page", "Page 2 of 2")
		if err := demo.eval(received, &page2); err != nil || len(page2) != 2 {
			t.Fatalf("page 2 shows %v (%v), want 2 requests", page2, err)
		}
		if all := append(page1, page2...); !slices.IsSorted(all) {
			t.Errorf("oldest first, the requests were received at %v", all)
		}
		demo.waitFor("every request to complete", `[...document.querySelectorAll("tbody.request")].every((b) => b.dataset.requestStatus === "Complete")`)
		demo.shot("04-tracking-page-2")
	})

	step("Playground", func(t *testing.T) {
		demo.t = t
		demo.do("open the playground", chromedp.Click(chromedp.CSS(`#nav a[data-view="playground"]`)))
		demo.waitFor("the formats", `document.querySelectorAll("#pg-format option").length === 2`)
		demo.checkLabels("playground")
		demo.do("type a record", chromedp.SendKeys(chromedp.ID("pg-input"),
			`{"id": "p1", "type": "call", "timestamp": "2020-05-18T21:15:00-05:00", "duration": "PT2M", "user_email": "Ann@Example.COM"}`))
		demo.waitFor("the mapped record", `document.querySelector("#pg-output article.record.valid .sink-name")?.textContent === "activities"`)
		if got := demo.str(`document.querySelector('#pg-output tr[data-field="occurred_at"] td').textContent`); got != `"2020-05-19T02:15:00Z"` {
			t.Errorf("occurred_at reads %s", got)
		}
		if got := demo.str(`document.querySelector('#pg-output tr[data-field="user"] td').textContent`); got != `"ann@example.com"` {
			t.Errorf("user reads %s", got)
		}
		if got := demo.str(`document.querySelector("#pg-output .route-name").textContent`); got != "calls" {
			t.Errorf("route reads %q", got)
		}
		demo.shot("05-playground-valid")

		demo.set("#pg-input", "")
		demo.do("replace it with an envelope", chromedp.SendKeys(chromedp.ID("pg-input"), `{"format": "activity", "payload": [{"id": "q1", "type": "quote", "timestamp": "2020-05-18T21:20:00Z", "user_email": "a@b.c", "amount": 12.5}, {"id": "x1", "type": "visit"}]}`))
		demo.waitFor("two records", `document.querySelectorAll("#pg-output article.record").length === 2 && document.querySelector("#pg-output article.record.invalid")`)
		if got := demo.str(`document.querySelector("#pg-output article.record.invalid .errors-list").textContent`); !strings.Contains(got, "type must be call or quote") {
			t.Errorf("invalid record explains %q", got)
		}
		demo.waitText("#pg-summary", "2 records: 1 valid, 1 invalid")
		demo.shot("06-playground-envelope")

		demo.do("break the JSON", chromedp.SendKeys(chromedp.ID("pg-input"), `,`))
		demo.waitText("#pg-summary", "Not valid JSON")
		status, _, out := g.do(t, "POST", "/tracking", "demo", "demo-secret", "application/json",
			[]byte(`{"search":[{"by":"externalReference","value":["p1","q1","x1"]}]}`))
		if status != http.StatusOK || gjson.GetBytes(out, "data.paging.totalRequests").Int() != 0 {
			t.Errorf("the playground queued something: %d %s", status, out)
		}
	})

	step("Overview", func(t *testing.T) {
		demo.t = t
		demo.do("open the overview", chromedp.Click(chromedp.CSS(`#nav a[data-view="overview"]`)),
			chromedp.Click(chromedp.ID("overview-refresh")))
		demo.waitText("#overview-hour .total", "14 records in all")
		legend := func(box, status string) string {
			return demo.str(fmt.Sprintf(`document.querySelector('#%s table.legend tr[data-status="%s"] td').textContent`, box, status))
		}
		for _, box := range []string{"overview-hour", "overview-day"} {
			if c, i := legend(box, "complete"), legend(box, "invalid"); c != "13" || i != "1" {
				t.Errorf("%s: complete %s, invalid %s; want 13 and 1", box, c, i)
			}
		}
		if n := demo.str(`document.querySelectorAll("#overview-hour svg.timechart rect.st-complete").length`); n == "0" {
			t.Error("the hour chart draws no complete column")
		}
		demo.waitFor("the waiting count", `document.querySelector("#overview-waiting .waiting")?.textContent === "0"`)
		// The gateway's own state, from /readyz and /metrics.
		demo.waitText("#overview-backlog", "The gateway is ready.")
		demo.waitFor("the queues", `[...document.querySelectorAll("#overview-backlog table.queues th code")].some((c) => c.textContent === "fragments")`)
		demo.checkLabels("overview")
		demo.shot("07-overview")
	})

	step("Integrations", func(t *testing.T) {
		demo.t = t
		demo.do("open integrations", chromedp.Click(chromedp.CSS(`#nav a[data-view="integrations"]`)))
		demo.waitFor("the integrations view", `!document.querySelector("#view-integrations").hidden`)
		demo.checkLabels("integrations")
		demo.do("show the hub", chromedp.SendKeys(chromedp.ID("int-hub"), demoHub+"\r"))
		demo.waitFor("the hub's list", `!document.querySelector("#int-body").hidden`)
		hooks := newHookReceiver(t)
		demo.do("fill the create form", chromedp.Click(chromedp.CSS(`#int-create-box summary`)),
			chromedp.SendKeys(chromedp.ID("ic-name"), "Console hook"),
			chromedp.SendKeys(chromedp.ID("ic-url"), hooks.URL+"/hook"),
			chromedp.Click(chromedp.CSS(`#int-create button[type=submit]`)))
		demo.waitFor("the new integration", `[...document.querySelectorAll("#int-list tr[data-integration] td")].some((td) => td.textContent === "Console hook")`)
		demo.waitFor("its signing secret", `document.querySelector("#int-secret")?.value.startsWith("whsec_")`)
		secret := demo.str(`document.querySelector("#int-secret").value`)

		// A request completes: its webhook fails once (HTTP 500), shows in the log, and is retried.
		g.waitComplete(t, g.push(t, []byte(`{"format":"activity","payload":[{"id":"hooked-1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"}]}`)), 30*time.Second)
		row := `document.querySelector("#dl-list tr[data-delivery]")`
		demo.waitFor("the failed attempt in the deliveries log", row+`?.textContent.includes("request:completed") && `+row+`.querySelector("details")`)
		demo.do("open its attempts", chromedp.Click(chromedp.CSS(`#dl-list tr[data-delivery] details summary`)))
		demo.waitText("#dl-list tr[data-delivery] details ol", "HTTP 500")
		hooks.succeed()
		demo.do("retry it", chromedp.Click(chromedp.CSS(`#dl-list tr[data-delivery] button.retry`)))
		demo.waitText("#dl-message", "is being resent")
		demo.waitFor("the delivery to succeed", row+`?.querySelector(".badge")?.textContent === "succeeded"`)
		hooks.checkSigned(t, secret)
		demo.shot("08-integrations-deliveries")

		demo.do("pause it", chromedp.Click(chromedp.ID("int-toggle")))
		demo.waitText("#int-list", "Paused")
		// The detail is drawn again after the pause (its toggle then offers Resume); a click on
		// a button of the old drawing finds no node. Press twice, the second time once the
		// button asks for it.
		demo.waitText("#int-toggle", "Resume")
		demo.do("regenerate keys", chromedp.Click(chromedp.CSS(`#int-detail .actions button:nth-child(2)`)))
		demo.waitText("#int-detail .actions button:nth-child(2)", "Press again")
		demo.do("confirm", chromedp.Click(chromedp.CSS(`#int-detail .actions button:nth-child(2)`)))
		demo.waitFor("a new secret", fmt.Sprintf(`document.querySelector("#int-secret")?.value.startsWith("whsec_") && document.querySelector("#int-secret").value !== %s`, js(secret)))
		demo.shot("09-integrations-paused")
	})

	step("Phone", func(t *testing.T) {
		demo.t = t
		// A reload keeps the tab's session.
		demo.do("phone viewport", chromedp.EmulateViewport(390, 844),
			chromedp.Evaluate[chromedp.Void](`location.hash = "#/tracking"; window.beforeReload = true`), chromedp.Reload())
		demo.waitFor("the tracking view after reload", `!window.beforeReload && !document.querySelector("#view-tracking").hidden`)
		demo.do("show one request", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)),
			chromedp.SendKeys(chromedp.ID("t-id"), reqID+"\r"))
		demo.waitFor("the request", `document.querySelector('tbody[data-id="`+reqID+`"]')`)
		demo.openMessages(reqID)
		demo.noSidewaysScroll("tracking")
		demo.shot("10-phone-tracking")
		demo.do("phone playground", chromedp.Click(chromedp.CSS(`#nav a[data-view="playground"]`)))
		demo.waitFor("the formats", `document.querySelectorAll("#pg-format option").length === 2`)
		demo.do("type a record", chromedp.SendKeys(chromedp.ID("pg-input"), `[{"id": "p1", "type": "quote", "timestamp": "2020-05-18T21:15:00Z", "user_email": "a@b.c", "href": "https://my.quotes.net/a-rather-long-address-that-must-wrap-on-a-phone"}, {"id": "x"}]`))
		demo.waitFor("two records", `document.querySelectorAll("#pg-output article.record").length === 2`)
		demo.noSidewaysScroll("playground")
		demo.shot("10-phone-playground")
		demo.do("phone overview", chromedp.Click(chromedp.CSS(`#nav a[data-view="overview"]`)))
		demo.waitFor("the charts", `document.querySelector("#overview-day svg.timechart")`)
		demo.noSidewaysScroll("overview")
		demo.shot("10-phone-overview")
		demo.do("phone integrations", chromedp.Click(chromedp.CSS(`#nav a[data-view="integrations"]`)))
		demo.waitFor("the integrations view", `!document.querySelector("#view-integrations").hidden && document.querySelector("#int-hub").value !== ""`)
		demo.do("show the hub", chromedp.Click(chromedp.CSS(`#int-hub-form button[type=submit]`)))
		demo.waitFor("the hub's list or the notice", `!document.querySelector("#int-body").hidden || !document.querySelector("#int-message").hidden`)
		demo.noSidewaysScroll("integrations")
		demo.shot("10-phone-integrations")
		demo.do("laptop viewport", chromedp.ResetViewport())
	})

	step("OtherSeesNothingOfDemo", func(t *testing.T) {
		otherID := pushAs(t, g, "other", "other-secret", `{"format":"activity","request_id":"other-batch","payload":[{"id":"other-rec-1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"o@o.o"}]}`)
		other := newTab(t, browser, g.URL, shots, "other")
		defer other.checkConsole()
		other.navigate("/console/#/tracking")
		other.waitFor("the sign-in page", `!document.querySelector("#view-signin").hidden`)
		other.do("sign in as other", chromedp.SendKeys(chromedp.ID("signin-id"), "other"), chromedp.SendKeys(chromedp.ID("signin-secret"), "other-secret\r"))
		other.waitFor("the tracking view", `!document.querySelector("#view-tracking").hidden`)
		if nav := other.str(`[...document.querySelectorAll("#nav a")].filter((a) => !a.hidden).map((a) => a.textContent).join(",")`); nav != "Overview,Tracking,Playground" {
			t.Errorf("other's navigation shows %s (other has no integrations scope)", nav)
		}
		demoMarkers := []string{reqID, "console-batch-1", "cons-call-1", "cons-bad-1", "page-0", "payment_status_updated", demoHub, "Demo Partner"}
		seesNothingOfDemo := func(page string) {
			t.Helper()
			var html string
			if err := other.eval(`document.documentElement.outerHTML + "\n" + document.body.innerText`, &html); err != nil {
				t.Fatal(err)
			}
			for _, m := range demoMarkers {
				if strings.Contains(html, m) {
					t.Errorf("%s page shows demo's %q to other", page, m)
				}
			}
		}

		other.set("#t-range", "any")
		other.do("search any time", chromedp.Click(chromedp.CSS(`#tracking-form button[type=submit]`)))
		other.waitFor("other's own request", fmt.Sprintf(`document.querySelector('tbody[data-id=%s]')?.dataset.requestStatus === "Complete"`, js(otherID)))
		if n := other.str(`document.querySelectorAll("tbody.request").length`); n != "1" {
			t.Errorf("other sees %s requests, want only its own", n)
		}
		other.do("search demo's request id", chromedp.SendKeys(chromedp.ID("t-id"), reqID+"\r"))
		other.waitText("#t-results", "No requests match")
		other.do("clear", chromedp.Click(chromedp.CSS(`#tracking-form button[type=reset]`)))
		other.waitFor("the cleared search", fmt.Sprintf(`document.querySelector('tbody[data-id=%s]')`, js(otherID)))
		seesNothingOfDemo("tracking")
		other.shot("01-tracking")

		other.do("open the overview", chromedp.Click(chromedp.CSS(`#nav a[data-view="overview"]`)))
		other.waitText("#overview-hour .total", "1 record in all")
		seesNothingOfDemo("overview")
		other.shot("02-overview")

		other.do("open the playground", chromedp.Click(chromedp.CSS(`#nav a[data-view="playground"]`)))
		other.waitFor("other's formats", `document.querySelectorAll("#pg-format option").length === 1`)
		other.do("try demo's format", chromedp.SendKeys(chromedp.ID("pg-input"), `{"format": "payment_status_updated", "payload": [{}]}`))
		other.waitText("#pg-summary", "not assigned")
		other.set("#pg-input", "")
		other.waitText("#pg-summary", "Type a record")
		seesNothingOfDemo("playground")
		other.shot("03-playground")

		// Integrations is not offered; its address falls back to a view other may use.
		other.navigate("/console/#/integrations")
		other.waitFor("a view other may use", `location.hash === "#/overview" && !document.querySelector("#view-overview").hidden`)
		seesNothingOfDemo("integrations")
		other.shot("04-integrations-refused")

		other.do("sign out", chromedp.Click(chromedp.ID("signout")))
		other.waitFor("the sign-in page", `!document.querySelector("#view-signin").hidden && sessionStorage.length === 0`)
		seesNothingOfDemo("sign-in")
	})

	step("SessionRejected", func(t *testing.T) {
		demo.t = t
		// A token the gateway refuses (revoked key, expired) ends the session on the next call.
		demo.do("spoil the token", chromedp.Evaluate[chromedp.Void](`(() => {
			const s = JSON.parse(sessionStorage.getItem("gateway-console.session"));
			s.token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c3BvaWx0";
			sessionStorage.setItem("gateway-console.session", JSON.stringify(s));
		})()`), chromedp.Click(chromedp.CSS(`#nav a[data-view="overview"]`)))
		// The click reloads the page mid-action: press the button from the page itself.
		demo.do("refresh the overview", chromedp.Evaluate[chromedp.Void](`document.querySelector("#overview-refresh").click()`))
		demo.waitText("#signin-error", "no longer accepts your session")
		if demo.str(`document.querySelector("#overview-hour").textContent`) != "" {
			t.Error("the overview is still in the page after the session ended")
		}
		demo.do("sign in again", chromedp.SendKeys(chromedp.ID("signin-id"), "demo"), chromedp.SendKeys(chromedp.ID("signin-secret"), "demo-secret\r"))
		demo.waitFor("the overview", `!document.querySelector("#view-overview").hidden`)
	})

	step("SignOut", func(t *testing.T) {
		demo.t = t
		demo.do("sign out", chromedp.Click(chromedp.ID("signout")))
		demo.waitFor("the sign-in page", `!document.querySelector("#view-signin").hidden && document.querySelector("#nav").hidden`)
		if n := demo.str(`Object.keys(sessionStorage).filter((k) => k.startsWith("gateway-console.")).length`); n != "0" {
			t.Errorf("%s console keys left in sessionStorage after sign-out", n)
		}
		if demo.str(`document.querySelector("#t-results").textContent`) != "" {
			t.Error("tracking results are still in the page after sign-out")
		}
	})
}

// activityVersion is the version of the activity mapping, from GET /api/v1/formats.
func activityVersion(t *testing.T, g *gateway) string {
	t.Helper()
	status, _, body := g.do(t, "GET", "/api/v1/formats", "demo", "demo-secret", "", nil)
	v := gjson.GetBytes(body, `formats.#(format=="activity").mappingVersion`).String()
	if status != http.StatusOK || v == "" {
		t.Fatalf("GET /api/v1/formats: %d %s", status, body)
	}
	return v
}

// pushAs pushes body as client and waits until the request is complete.
func pushAs(t *testing.T, g *gateway, client, secret, body string) string {
	t.Helper()
	status, _, out := g.do(t, "POST", "/push", client, secret, "application/json", []byte(body))
	if status != http.StatusAccepted {
		t.Fatalf("push as %s: %d %s", client, status, out)
	}
	id := gjson.GetBytes(out, "id").String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, out := g.do(t, "POST", "/tracking", client, secret, "application/json", []byte(`{"search":[{"by":"id","value":"`+id+`"}]}`))
		if gjson.GetBytes(out, "data.requests.0.requestStatus").String() == "Complete" {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s of %s not complete: %s", id, client, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hookReceiver is a partner's webhook endpoint: it answers 500 until succeed is called, then 204,
// and keeps the requests it accepted.
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	ok       bool
	accepted []*http.Request
	bodies   [][]byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h.accepted = append(h.accepted, r)
		h.bodies = append(h.bodies, body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) succeed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ok = true
}

// checkSigned verifies the accepted webhook's Standard Webhooks v1 signature with the secret
// the console showed: proof that the console shows the real key.
func (h *hookReceiver) checkSigned(t *testing.T, secret string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.accepted) == 0 {
		t.Fatal("the receiver accepted no webhook")
	}
	r, body := h.accepted[0], h.bodies[0]
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("secret %q shown by the console is not whsec_<base64>: %v", secret, err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !slices.Contains(strings.Fields(r.Header.Get("webhook-signature")), want) {
		t.Errorf("webhook-signature %q lacks %s (signed with the secret the console showed)", r.Header.Get("webhook-signature"), want)
	}
}
