// Drives headless Chromium with a virtual WebAuthn authenticator (DevTools
// protocol) against a running auth-serve, and prints one JSON object with
// what every step answered; tests/e2e/test_passkeys.py checks it.
//
// Environment:
//   PK_BASE_A    origin of the daemon the page is on (http://localhost:P)
//   PK_BASE_B    optional: a second daemon on the same database
//   PK_TOKEN     access token of a user (of the daemon at PK_BASE_A)
//   PK_EMAIL     that user's email (checks the lockout count's reset)
//   PK_PASSWORD  that user's password (deletes the account at the end)
//   PK_CHROMIUM  the browser (default /usr/bin/chromium)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const A = process.env.PK_BASE_A;
const B = process.env.PK_BASE_B || '';
const TOKEN = process.env.PK_TOKEN;
const PASSWORD = process.env.PK_PASSWORD || '';
const EMAIL = process.env.PK_EMAIL || '';
const AUTH = '/api/v1/auth';

async function post(base, p, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(base + p, { method: 'POST', headers,
                                    body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null,
           mfa: r.headers.get('x-auth-mfa') };
}

async function call(base, method, p, token) {
  const r = await fetch(base + p, { method,
                                    headers: { Authorization: 'Bearer ' +
                                               token } });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null,
           mfa: r.headers.get('x-auth-mfa') };
}

// In the page: the README's registration, same-origin fetch and all.
async function registerInPage(token) {
  const call = async (p, body) => {
    const r = await fetch(p, { method: 'POST', headers: {
      'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
      body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  const o = await call('/api/v1/auth/passkeys/register/options', {});
  if (o.status !== 200) return { options: o };
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(
    o.body.publicKey);
  const cred = await navigator.credentials.create({ publicKey });
  const r = await call('/api/v1/auth/passkeys/register',
                       { credential: cred.toJSON(), name: 'Test laptop' });
  return { options: o, register: r };
}

// In the page: the README's login, without an email.
async function loginInPage() {
  const o = await fetch('/api/v1/auth/passkeys/login/options', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: '{}' });
  const options = await o.json();
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(
    options.publicKey);
  const cred = await navigator.credentials.get({ publicKey });
  const credential = cred.toJSON();
  const r = await fetch('/api/v1/auth/passkeys/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ credential }) });
  return { optionsStatus: o.status, options, status: r.status,
           body: await r.json(), credential };
}

// In the page: only the authenticator's part, for options from elsewhere.
async function getInPage(json) {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(json);
  const cred = await navigator.credentials.get({ publicKey });
  return cred.toJSON();
}

async function createInPage(json) {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(json);
  const cred = await navigator.credentials.create({ publicKey });
  return cred.toJSON();
}

const AUTHENTICATOR = { protocol: 'ctap2', transport: 'internal',
                        hasResidentKey: true, hasUserVerification: true,
                        isUserVerified: true,
                        automaticPresenceSimulation: true };

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'auth-pk-chrome-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.PK_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu',
           '--disable-background-networking', '--disable-component-update',
           '--disable-sync', '--no-first-run',
           '--user-data-dir=' + profile],
  });
  const out = {};
  try {
    const page = await browser.newPage();
    await page.goto(A + '/healthz');
    out.secureContext = await page.evaluate(() => window.isSecureContext);
    const cdp = await page.createCDPSession();
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId: first } = await cdp.send(
      'WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR });

    out.reg = await page.evaluate(registerInPage, TOKEN);
    out.list = await call(A, 'GET', AUTH + '/passkeys', TOKEN);

    out.login = await page.evaluate(loginInPage);
    out.replay = await post(A, AUTH + '/passkeys/login',
                            { credential: out.login.credential });
    if (out.login.status === 200)
      out.verify = await call(A, 'GET', AUTH + '/verify',
                              out.login.body.access_token);

    if (B) {
      // A login begun on one instance and finished on the other.
      const o = await post(A, AUTH + '/passkeys/login/options', {});
      const cred = await page.evaluate(getInPage, o.body.publicKey);
      out.crossLogin = await post(B, AUTH + '/passkeys/login',
                                  { credential: cred });
      if (out.crossLogin.status === 200)
        out.crossVerify = await call(B, 'GET', AUTH + '/verify',
                                     out.crossLogin.body.access_token);
    }

    // One assertion sent many times at once: exactly one login, the
    // challenge being used up by one statement.
    out.race = [];
    for (let round = 0; round < 5; round++) {
      const o = await post(A, AUTH + '/passkeys/login/options', {});
      const cred = await page.evaluate(getInPage, o.body.publicKey);
      const all = await Promise.all(Array.from({ length: 8 }, () =>
        post(B || A, AUTH + '/passkeys/login', { credential: cred })));
      out.race.push(all.map((r) => r.status));
    }

    // The credential as the authenticator holds it now.
    const { credentials } = await cdp.send('WebAuthn.getCredentials',
                                           { authenticatorId: first });
    out.credentials = credentials.map((c) => ({
      signCount: c.signCount, isResidentCredential: c.isResidentCredential,
      userHandle: c.userHandle }));

    // A clone: the same private key in a second authenticator whose
    // counter was set back to zero.
    const original = credentials[0];
    await cdp.send('WebAuthn.removeVirtualAuthenticator',
                   { authenticatorId: first });
    const { authenticatorId: clone } = await cdp.send(
      'WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR });
    await cdp.send('WebAuthn.addCredential', { authenticatorId: clone,
      credential: { ...original, signCount: 0 } });
    out.clone = await page.evaluate(loginInPage);
    delete out.clone.credential;

    // The genuine authenticator again, its counter moved on: accepted,
    // and (a complete login) it clears the account's failure count:
    // failures before and after it never add up to the lockout threshold.
    const wrong = async () => (await post(A, AUTH + '/login', {
      email: EMAIL, password: 'not the password at all' })).status;
    out.failedBefore = EMAIL ? [await wrong(), await wrong()] : [];
    await cdp.send('WebAuthn.removeVirtualAuthenticator',
                   { authenticatorId: clone });
    const { authenticatorId: genuine } = await cdp.send(
      'WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR });
    await cdp.send('WebAuthn.addCredential', { authenticatorId: genuine,
      credential: { ...original, signCount: original.signCount + 10 } });
    out.genuine = await page.evaluate(loginInPage);
    delete out.genuine.credential;
    if (EMAIL) {
      out.failedAfter = [await wrong(), await wrong()];
      out.passwordLogin = (await post(A, AUTH + '/login', {
        email: EMAIL, password: PASSWORD })).status;
    }

    if (B) {
      // A registration begun on the second instance, finished on the
      // first, with another authenticator (the first one is excluded).
      await cdp.send('WebAuthn.removeVirtualAuthenticator',
                     { authenticatorId: genuine });
      const { authenticatorId: other } = await cdp.send(
        'WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR });
      void other;
      const ro = await post(B, AUTH + '/passkeys/register/options', {},
                            TOKEN);
      const rc = await page.evaluate(createInPage, ro.body.publicKey);
      out.crossRegister = await post(A, AUTH + '/passkeys/register',
                                     { credential: rc, name: 'Second' },
                                     TOKEN);
      out.listAfter = await call(A, 'GET', AUTH + '/passkeys', TOKEN);
    }

    if (PASSWORD) {
      const del = await fetch(A + '/api/v1/users/me', {
        method: 'DELETE', headers: { 'Content-Type': 'application/json',
                                     Authorization: 'Bearer ' + TOKEN },
        body: JSON.stringify({ password: PASSWORD }) });
      out.deleteUser = del.status;
      out.afterDelete = await page.evaluate(loginInPage);
      delete out.afterDelete.credential;
    }
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
