// Swagger UI at /docs in headless Chromium: the page loads from the daemon
// alone, lists every operation of /openapi.json, and "Authorize" with a
// bearer token + "Try it out" + "Execute" on GET /api/v1/users/me is
// answered 200.
//   node docs.test.mjs BASE_URL ACCESS_TOKEN
// Exits 0 when all holds, 1 with the reason otherwise. CHROMIUM overrides
// /usr/bin/chromium.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [base, token] = process.argv.slice(2);
const STEP_MS = 30000;

function fail(msg) {
    throw new Error(msg);
}

async function main() {
    const origin = new URL(base).origin;
    const doc = await (await fetch(base + "/openapi.json")).json();
    let ops = 0, meId = null, meTag = null;
    for (const [p, item] of Object.entries(doc.paths)) {
        for (const [m, op] of Object.entries(item)) {
            if (!["get", "put", "post", "delete", "patch"].includes(m))
                continue;
            ops++;
            if (p === "/api/v1/users/me" && m === "get") {
                meId = op.operationId;
                meTag = op.tags[0];
            }
        }
    }
    for (const item of Object.values(doc.webhooks || {}))
        ops += Object.keys(item).filter((m) => m !== "parameters").length;
    if (!meId)
        fail("GET /api/v1/users/me is not in /openapi.json");

    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "auth-chromium-"));
    const browser = await puppeteer.launch({
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               "--no-first-run", "--user-data-dir=" + profile],
    });
    const foreign = [], problems = [];
    let meRequest = null;
    try {
        const page = await browser.newPage();
        page.setDefaultTimeout(STEP_MS);
        page.on("request", (r) => {
            const u = r.url();
            if (!u.startsWith("data:") && new URL(u).origin !== origin)
                foreign.push(u);
            if (u === origin + "/api/v1/users/me")
                meRequest = r;
        });
        page.on("response", (r) => {
            if (r.status() >= 400)
                problems.push(`${r.status()} for ${r.url()}`);
        });
        page.on("console", (m) => {
            if (m.type() === "error")
                problems.push(m.text());
        });
        page.on("pageerror", (e) => problems.push(String(e)));

        const res = await page.goto(base + "/docs",
                                    { waitUntil: "networkidle0" });
        if (res.status() !== 200)
            fail("/docs answered " + res.status());
        const csp = res.headers()["content-security-policy"] || "";
        if (!csp.includes("script-src 'self'"))
            fail("no script-src 'self' in the CSP: " + csp);
        await page.waitForSelector(".opblock");
        const shown = await page.$$eval(".opblock", (els) => els.length);
        if (shown !== ops)
            fail(`Swagger UI shows ${shown} operations, the document ${ops}`);

        // Authorize: the bearerAuth scheme's value field, then its button.
        await page.click("button.authorize");
        await page.waitForSelector(".modal-ux .auth-container");
        const filled = await page.$$eval(".modal-ux .auth-container",
            (boxes) => boxes.findIndex((b) => /bearerAuth/.test(b.textContent)
                                               && b.querySelector("input")));
        if (filled < 0)
            fail("no bearerAuth field in the Authorize dialog");
        const box = (await page.$$(".modal-ux .auth-container"))[filled];
        await (await box.$("input")).type(token);
        await (await box.$("button.authorize")).click();
        await box.waitForSelector("button.btn-done, button.logout");
        await page.click(".modal-ux button.close-modal");

        // GET /api/v1/users/me: open, Try it out, Execute.
        const id = `#operations-${meTag}-${meId}`;
        // Each button appears once the click before it has rendered (a
        // click finds only what is there already: on a busy machine the
        // expanded operation was not yet).
        await page.click(`${id} .opblock-summary-control`);
        await (await page.waitForSelector(`${id} button.try-out__btn`))
            .click();
        await (await page.waitForSelector(`${id} button.execute`)).click();
        await page.waitForSelector(
            `${id} .live-responses-table .response .response-col_status`);
        const status = await page.$eval(
            `${id} .live-responses-table .response .response-col_status`,
            (e) => e.textContent.trim());
        if (!meRequest)
            fail("Execute sent no request to /api/v1/users/me");
        if (meRequest.headers()["authorization"] !== "Bearer " + token)
            fail("the request did not carry the bearer token");
        if (status !== "200")
            fail("Execute got " + status);
        const body = await page.$eval(
            `${id} .live-responses-table .response-col_description pre`,
            (e) => e.textContent);
        if (!body.includes('"email"'))
            fail("the response shown is not the user: " + body);
        if (foreign.length)
            fail("requests to another origin: " + foreign.join(", "));
        if (problems.length)
            fail("errors in the page: " + problems.join(" | "));
        console.log(JSON.stringify({ operations: shown, status }));
    } finally {
        await browser.close();
        fs.rmSync(profile, { recursive: true, force: true });
    }
}

main().then(() => process.exit(0), (e) => {
    console.error(e.message || e);
    process.exit(1);
});
