"""Drives the inspector's page in a real headless Chromium (Debian's), as a
person would: sign in, find the last stored events on Live and watch one
arrive above the marked row, filter, open a timeline and an event (by its
whole row), see credentials hidden, a refusal, the consumers and a forward destination, and
where an event stands for each consumer and destination. Exits non-zero on the first check that
fails; saves a screenshot of each view into $ARTIFACTS.

Environment: INSPECTOR_URL, TOKEN, BRIDGE_URL, SECRET, BRIDGE_BIN,
CHROMIUM_BIN, ARTIFACTS, CONSUMER, EXPECT_PENDING, SECRET_EVENT_ID,
SECRET_VALUES (comma-separated: stored in that event, never to be shown);
DESTINATION and DESTINATION_CONSUMER (a forward destination, done with every
event it takes: the last answered 200), DELIVERED_EVENT_ID (an event it took)
and DEAD_EVENT_ID (one it refused, a dead letter, with the answer
DESTINATION_ANSWER, markup to be shown as text). CONSUMER has acknowledged
nothing.
"""

import os
import re
import subprocess
import sys
import time

from playwright.sync_api import expect, sync_playwright

env = os.environ
url = env["INSPECTOR_URL"]
shots = env["ARTIFACTS"]
os.makedirs(shots, exist_ok=True)


def shot(page, name):
    page.screenshot(path=os.path.join(shots, name + ".png"), full_page=False)


def send(event_type):
    """Posts a signed event with the project's own `send`; returns its id."""
    out = subprocess.run(
        [env["BRIDGE_BIN"], "send", event_type, "--url", env["BRIDGE_URL"], "--secret", env["SECRET"]],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout
    m = re.search(r"id=(\S+)", out)
    assert m, out
    return m.group(1)


def open_event(page, event_id):
    """Finds the event by its id on History and opens it."""
    page.goto(url + "#/history")
    page.fill("#filters input[name=object]", "")
    page.fill("#filters input[name=id]", event_id)
    page.click("#filters button[type=submit]")
    expect(page.locator("#history-rows tr")).to_have_count(1)
    expect(page.locator("#history-rows")).to_contain_text(event_id)
    page.locator("#history-rows tr td:nth-child(5)").click()
    expect(page.locator("#view-event")).to_be_visible()
    expect(page.locator("#event-pretty")).to_contain_text('"id": "' + event_id + '"')


def expect_standing(page, consumer, status):
    """The event's row for `consumer` says `status`, in so many words."""
    name = re.compile("^" + re.escape(consumer) + "$")
    row = page.locator("#event-consumers tr").filter(has=page.locator("td:first-child", has_text=name))
    expect(row).to_have_count(1)
    expect(row.locator("td:nth-child(2)")).to_have_text(status)


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=env["CHROMIUM_BIN"],
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(15000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Without the token: the form that asks for it, nothing else.
    page.goto(url)
    expect(page.locator("input[name=token]")).to_be_visible()
    page.fill("input[name=token]", env["TOKEN"])
    page.click("button[type=submit]")
    expect(page.locator("#view-live")).to_be_visible()
    cookies = [c for c in page.context.cookies() if c["name"] == "fastpix_inspector"]
    assert cookies and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict", cookies

    # Live opens on the last stored events, below a row marking where live starts.
    marker = page.locator("#live-rows tr.live-start")
    expect(marker).to_have_count(1)
    expect(marker).to_contain_text("live since")
    stored_rows = page.locator("#live-rows tr.live-start ~ tr")
    expect(stored_rows.first).to_be_visible()
    assert 1 <= stored_rows.count() <= 50, stored_rows.count()
    expect(page.locator("#live-rows")).to_contain_text("seed-0")

    # Live: an event sent now shows within 2 s, above the marker.
    page.wait_for_timeout(1000)  # the EventSource connects
    event_id = send("video.live_stream.active")
    sent_at = time.monotonic()
    expect(page.locator("#live-rows")).to_contain_text(event_id, timeout=2000)
    print(f"live: event shown {time.monotonic() - sent_at:.2f}s after send returned")
    above = page.locator("#live-rows tr", has=page.locator("td", has_text=event_id))
    assert page.evaluate(
        "([a, m]) => !!(a.compareDocumentPosition(m) & Node.DOCUMENT_POSITION_FOLLOWING)",
        [above.element_handle(), marker.element_handle()],
    ), "the live event is above the marker"
    shot(page, "live")

    # A whole row opens its event: a click on its type cell, not its link.
    page.locator("#live-rows tr", has_text=event_id).locator("td:nth-child(3)").click()
    expect(page.locator("#view-event")).to_be_visible()
    expect(page.locator("#event-pretty")).to_contain_text('"id": "' + event_id + '"')

    # History filtered by family.
    page.goto(url + "#/history")
    page.select_option("#family-select", "simulcast")
    page.click("#filters button[type=submit]")
    rows = page.locator("#history-rows tr")
    expect(rows.first).to_be_visible()
    # The filtered answer replaces the one the view opened with: wait for it.
    cells = page.locator("#history-rows tr td:nth-child(3)")
    expect(cells.filter(has_not_text=".simulcast.")).to_have_count(0)
    types = cells.all_text_contents()
    assert types and all(".simulcast." in t for t in types), types
    shot(page, "history-simulcast")

    # An object's timeline, then one event's detail with its payload.
    page.select_option("#family-select", "")
    page.fill("#filters input[name=id]", event_id)
    page.click("#filters button[type=submit]")
    expect(page.locator("#history-rows tr")).to_have_count(1)
    page.locator("#history-rows tr td:nth-child(4) a").click()
    expect(page.locator("#view-object")).to_be_visible()
    expect(page.locator("#object-rows")).to_contain_text(event_id)
    shot(page, "object-timeline")
    page.locator("#object-rows tr", has_text=event_id).locator("td:first-child a").click()
    expect(page.locator("#view-event")).to_be_visible()
    expect(page.locator("#event-pretty")).to_contain_text('"id": "' + event_id + '"')
    expect(page.locator("#event-headers")).to_contain_text("FastPix-Event-Id")
    shot(page, "event-detail")

    # The hostile event: its markup is shown as text, never run.
    page.goto(url + "#/history")
    page.fill("#filters input[name=id]", "")
    page.fill("#filters input[name=object]", "<img src=x onerror=window.__xss=1>")
    page.click("#filters button[type=submit]")
    expect(page.locator("#history-rows")).to_contain_text("<img src=x onerror=window.__xss=1>")
    assert page.locator("#history-rows img").count() == 0
    page.locator("#history-rows tr td:first-child a").first.click()
    expect(page.locator("#event-pretty")).to_contain_text("<script>")
    assert page.locator("#view-event script, #view-event img").count() == 0
    assert page.evaluate("window.__xss") is None, "markup from an event ran"

    # Credentials in a payload: hidden in the pretty view, the as-stored view
    # says why it is not shown, and no value is anywhere in the page.
    page.goto(url + "#/history")
    page.fill("#filters input[name=object]", "")
    page.fill("#filters input[name=id]", env["SECRET_EVENT_ID"])
    page.click("#filters button[type=submit]")
    expect(page.locator("#history-rows tr")).to_have_count(1)
    page.locator("#history-rows tr td:nth-child(5)").click()
    expect(page.locator("#view-event")).to_be_visible()
    expect(page.locator("#event-pretty")).to_contain_text("•••• (hidden)")
    # Not a media event: neither the media consumer nor the destination takes it.
    expect(page.locator("#event-consumers")).not_to_contain_text(env["DESTINATION_CONSUMER"])
    expect(page.locator("#event-raw")).to_contain_text("inspect.reveal_secrets")
    expect(page.locator("#event-hidden")).to_contain_text("hidden")
    html = page.content()
    for value in env["SECRET_VALUES"].split(","):
        assert value not in html, value
    shot(page, "event-hidden-credentials")

    # A refused delivery (bad signature) is listed.
    page.goto(url + "#/refused")
    expect(page.locator("#refused-rows")).to_contain_text("bad_signature")
    shot(page, "refused")

    # Consumers show their pending counts, and the forward destination its
    # consumer, state, last status and pending count.
    page.goto(url + "#/consumers")
    row = page.locator("#consumer-rows tr", has_text=env["CONSUMER"])
    expect(row.locator("td.pending")).to_have_text(env["EXPECT_PENDING"])
    dest = page.locator("#destination-rows tr", has_text=env["DESTINATION_CONSUMER"])
    expect(dest).to_have_count(1)
    expect(dest.locator("td")).to_have_text(
        [env["DESTINATION"], env["DESTINATION_CONSUMER"], "delivering", "200", "0", re.compile(r"UTC")]
    )
    shot(page, "consumers")

    # An event the destination took: delivered there, pending for the
    # consumer that has acknowledged nothing.
    open_event(page, env["DELIVERED_EVENT_ID"])
    expect_standing(page, env["DESTINATION_CONSUMER"], "delivered")
    expect_standing(page, env["CONSUMER"], "pending")
    shot(page, "event-delivered-to-destination")

    # The event it refused: a dead letter of the destination.
    open_event(page, env["DEAD_EVENT_ID"])
    expect_standing(page, env["DESTINATION_CONSUMER"], "dead-lettered")
    expect_standing(page, env["CONSUMER"], "pending")
    shot(page, "event-dead-lettered-by-destination")

    page.goto(url + "#/overview")
    expect(page.locator("#overview-families")).to_contain_text("media")
    expect(page.locator("#overview-fill")).to_contain_text("% full")
    expect(page.locator("#overview-fill-meter")).to_be_visible()
    expect(page.locator("#overview-chart canvas")).to_have_count(1)
    shot(page, "overview")

    # The destination's dead letter, with its answer shown as text, never run.
    page.goto(url + "#/dead")
    expect(page.locator("#view-dead")).to_be_visible()
    dead = page.locator("#dead-rows tr", has_text=env["DESTINATION_CONSUMER"])
    expect(dead).to_have_count(1)
    expect(dead).to_contain_text("HTTP 400: " + env["DESTINATION_ANSWER"])
    assert page.locator("#view-dead img").count() == 0
    assert page.evaluate("window.__xss") is None, "markup from a destination's answer ran"
    shot(page, "dead-letters")

    # Keyboard: j moves through the rows.
    page.goto(url + "#/history")
    expect(page.locator("#history-rows tr").first).to_be_visible()
    page.locator("body").press("j")
    expect(page.locator("#history-rows tr.sel")).to_have_count(1)

    assert not errors, errors
    browser.close()
print("browser checks passed")
