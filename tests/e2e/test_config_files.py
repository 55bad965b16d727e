"""Configuration files as operators write them: `.env` in the common
dotenv syntax (quotes, comments, `export`, a byte-order mark), lines it
cannot read refused with exit status 2 naming file and line, and
AUTH_JWT_KEY_FILE given as a symbolic link the way mounted secrets are."""
import os
import subprocess

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import BIN, Daemon, scratch
from jwtutil import parts


def check(cwd, env=None):
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    full.update(env or {})
    return subprocess.run([BIN, "config", "check"], env=full, cwd=cwd,
                          capture_output=True, timeout=60)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_config_check_reads_dotenv_syntax_and_names_bad_lines():
    cwd = scratch("cli-")
    env_path = os.path.join(cwd, ".env")
    write(env_path, b"\xef\xbb\xbfAUTH_PORT=8123\n"
          b'AUTH_JWT_ISSUER="issuer-a" # prod\n'
          b"export  AUTH_JWT_AUDIENCE='aud b'   # two blanks after export\n"
          b"\n   # comment\n")
    r = check(cwd)
    assert r.returncode == 0, r.stderr
    # A byte-order mark no longer hides a bad first line.
    write(env_path, b"\xef\xbb\xbfAUTH_PORT=abc\n")
    r = check(cwd)
    assert r.returncode == 2, r.stderr
    line = r.stderr.decode().strip()
    assert "\n" not in line and "AUTH_PORT" in line and "line 1" in line
    for bad in (b'AUTH_JWT_ISSUER="issuer-a\n',        # unterminated
                b'AUTH_JWT_ISSUER="issuer-a" prod\n',  # junk after quote
                b"AUTH_JWT_ISSUER issuer-a\n",         # no =
                b"AUTH JWT_ISSUER=issuer-a\n"):        # bad name
        write(env_path, b"# first\nAUTH_PORT=8123\n" + bad)
        r = check(cwd)
        assert r.returncode == 2, (bad, r.stderr)
        line = r.stderr.decode().strip()
        assert "\n" not in line and ".env" in line and "line 3" in line, \
            (bad, line)


def test_daemon_takes_quoted_value_and_linked_key_file():
    d = Daemon()
    # The key as a mounted secret: key.pem -> ..data/key.pem, ..data -> a
    # timestamped folder.
    secrets_dir = os.path.join(d.data_dir, "secrets")
    real_dir = os.path.join(secrets_dir, "..2026_12_01_00_00_00.1")
    os.makedirs(real_dir, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    write(os.path.join(real_dir, "key.pem"), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(os.path.join(real_dir, "key.pem"), 0o600)
    os.symlink("..2026_12_01_00_00_00.1", os.path.join(secrets_dir, "..data"))
    os.symlink("..data/key.pem", os.path.join(secrets_dir, "key.pem"))
    write(os.path.join(d.data_dir, ".env"),
          b'AUTH_JWT_ISSUER="issuer-a" # prod\n'
          b"export  AUTH_JWT_KEY_FILE=" +
          os.path.join(secrets_dir, "key.pem").encode() + b"\n")
    d.start()
    try:
        _, _, t = d.user()
        claims = parts(t["access_token"])[1]
        assert claims["iss"] == "issuer-a"
        # Signed with the linked key: its public half verifies the token.
        jwt.decode(t["access_token"], key.public_key(), algorithms=["ES256"],
                   audience="auth-serve", issuer="issuer-a")
    finally:
        assert d.stop() == 0, "\n".join(d.lines[-20:])


def test_config_check_loads_a_key_file_and_a_secret():
    """`config check` (systemd's ExecStartPre) refuses what serve would:
    a key file that is missing, not a PEM private key, or of another
    algorithm, one line naming AUTH_JWT_KEY_FILE; a good one passes."""
    cwd = scratch("cli-")
    path = os.path.join(cwd, "key.pem")
    r = check(cwd, {"AUTH_JWT_KEY_FILE": path})
    assert r.returncode == 2 and b"AUTH_JWT_KEY_FILE" in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1, r.stderr
    assert r.stdout == b"", r.stdout
    write(path, b"not a key\n")
    os.chmod(path, 0o600)
    r = check(cwd, {"AUTH_JWT_KEY_FILE": path})
    assert r.returncode == 2 and b"not a PEM" in r.stderr, r.stderr
    write(path, ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    r = check(cwd, {"AUTH_JWT_KEY_FILE": path})
    assert r.returncode == 0 and b"configuration ok" in r.stdout, r.stderr
    r = check(cwd, {"AUTH_JWT_KEY_FILE": path, "AUTH_JWT_ALG": "RS256"})
    assert r.returncode == 2 and b"AUTH_JWT_ALG" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(cwd, "data")), \
        "config check made the data folder"
    # a FIFO blocked the open for good (and a start with it, deaf to
    # SIGTERM); it is refused at once
    fifo = os.path.join(cwd, "fifo.pem")
    os.mkfifo(fifo)
    r = check(cwd, {"AUTH_JWT_KEY_FILE": fifo})
    assert r.returncode == 2 and b"AUTH_JWT_KEY_FILE" in r.stderr, r.stderr
    assert b"not a regular file" in r.stderr, r.stderr
    r = check(cwd, {"AUTH_JWT_KEY_FILE": cwd})          # a directory
    assert r.returncode == 2 and b"not a regular file" in r.stderr, r.stderr


def test_a_key_file_with_two_private_keys_is_refused():
    """A key file holding two private keys was read as its first, with
    nothing said: which key signs is the operator's choice. Refused, one
    line; a key after EC parameters (`openssl ecparam -genkey`'s output)
    or before a certificate is one key and passes."""
    cwd = scratch("cli-")
    path = os.path.join(cwd, "key.pem")

    def pem(fmt=serialization.PrivateFormat.PKCS8):
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    for two in (pem() + pem(),
                pem(serialization.PrivateFormat.TraditionalOpenSSL) + pem(),
                pem().replace(b"\n", b"\r\n") * 2):
        write(path, two)
        os.chmod(path, 0o600)
        r = check(cwd, {"AUTH_JWT_KEY_FILE": path})
        assert r.returncode == 2, r
        assert b"more than one private key" in r.stderr, r.stderr
        assert r.stderr.count(b"\n") == 1, r.stderr
    ecparams = subprocess.run(["openssl", "ecparam", "-name", "prime256v1",
                               "-genkey"], check=True,
                              capture_output=True).stdout
    assert ecparams.count(b"-----BEGIN ") == 2, ecparams
    write(path, ecparams)
    r = check(cwd, {"AUTH_JWT_KEY_FILE": path})
    assert r.returncode == 0 and b"configuration ok" in r.stdout, r.stderr


def test_encrypted_key_file_refused_without_a_passphrase_prompt():
    """An encrypted AUTH_JWT_KEY_FILE is refused at once: OpenSSL's
    prompt ("Enter PEM pass phrase:") held the start on a terminal, or,
    without one, read the passphrase from stdin. Here stdin holds the
    right one and the key must still be refused, one line, no prompt."""
    cwd = scratch("cli-")
    key = ec.generate_private_key(ec.SECP256R1())
    for fmt in (serialization.PrivateFormat.PKCS8,
                serialization.PrivateFormat.TraditionalOpenSSL):
        path = os.path.join(cwd, "enc.pem")
        write(path, key.private_bytes(
            serialization.Encoding.PEM, fmt,
            serialization.BestAvailableEncryption(b"hunter2")))
        os.chmod(path, 0o600)
        r = subprocess.run([BIN, "config", "check"], cwd=cwd,
                           env={"PATH": os.environ.get("PATH", "/bin"),
                                "AUTH_JWT_KEY_FILE": path},
                           input=b"hunter2\n" * 4, capture_output=True,
                           timeout=60)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert b"AUTH_JWT_KEY_FILE" in r.stderr, r.stderr
        assert b"pass phrase" not in r.stderr + r.stdout, r.stderr
        assert r.stderr.count(b"\n") == 1, r.stderr


def test_url_port_refused_without_quoting_it():
    """A webhook or SMTP URL whose port is not 1-65535 is refused (exit
    2, naming the setting) and the refusal does not quote what follows
    the ':', often a token pasted there."""
    cwd = scratch("cli-")
    for name, url in (
            ("AUTH_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:1TOPSECRETTOKEN"),
            ("AUTH_NOTIFY_WEBHOOK_URL", "http://localhost:99999999/x"),
            ("AUTH_SMTP_URL", "smtps://mail.example.com:4TOPSECRETTOKEN")):
        r = check(cwd, {name: url,
                        "AUTH_NOTIFY_WEBHOOK_SECRET": "s" * 20,
                        "AUTH_SMTP_FROM": "a@example.com"})
        out = r.stdout + r.stderr
        assert r.returncode == 2 and name.encode() in r.stderr, out
        assert b"TOPSECRET" not in out and b"99999999" not in out, out


def test_text_values_must_be_utf8_without_control_characters():
    """A value that is not UTF-8 text stops the start (exit 2, naming it)
    instead of starting a daemon whose every login then fails: from the
    environment and from .env; a secret is taken as bytes."""
    cwd = scratch("cli-")
    bad = os.fsdecode(b"iss\xff")
    r = check(cwd, {"AUTH_JWT_ISSUER": bad})
    assert r.returncode == 2 and b"AUTH_JWT_ISSUER" in r.stderr, r.stderr
    write(os.path.join(cwd, ".env"), b"AUTH_JWT_AUDIENCE=aud\xc3\n")
    r = check(cwd)
    assert r.returncode == 2 and b"AUTH_JWT_AUDIENCE" in r.stderr, r.stderr
    assert b"line 1" in r.stderr, r.stderr
    write(os.path.join(cwd, ".env"),
          b'AUTH_SMTP_FROM="a@example.com\\r\\nBcc: b@example.com"\n')
    r = check(cwd)
    assert r.returncode == 2 and b"AUTH_SMTP_FROM" in r.stderr, r.stderr
    write(os.path.join(cwd, ".env"), "AUTH_JWT_ISSUER=émetteur\n".encode())
    r = check(cwd)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [BIN], env={"PATH": "/usr/bin:/bin", "AUTH_JWT_ISSUER": bad,
                    "AUTH_PORT": "0"}, cwd=cwd, capture_output=True,
        timeout=60)
    assert r.returncode == 2 and b"AUTH_JWT_ISSUER" in r.stderr, r.stderr


def test_a_dotenv_that_cannot_be_read_stops_the_start():
    """Only a missing .env is skipped: one that is there but unreadable
    (a directory, a FIFO, which would block the start for good, a link
    that loops; its permissions, for a daemon not run as root) stops
    `config check` with exit status 2 naming it, instead of a start on
    the defaults without what it sets."""
    cwd = scratch("cli-")
    env_path = os.path.join(cwd, ".env")
    assert check(cwd).returncode == 0                 # none: defaults
    os.mkdir(env_path)
    r = check(cwd)
    assert r.returncode == 2 and b".env" in r.stderr, r.stderr
    os.rmdir(env_path)
    os.mkfifo(env_path)
    r = check(cwd)                                    # at once, no writer
    assert r.returncode == 2 and b"not a regular file" in r.stderr, r.stderr
    os.unlink(env_path)
    os.symlink(".env", env_path)          # opening it fails, not ENOENT
    r = check(cwd)
    assert r.returncode == 2 and b"cannot be read" in r.stderr, r.stderr


def test_dotenv_nul_bytes_refused_long_foreign_lines_ignored():
    cwd = scratch("cli-")
    env_path = os.path.join(cwd, ".env")
    # a NUL cut the value short on the last line, unnoticed
    for data in (b"AUTH_JWT_ISSUER=abc\0def", b"AUTH_JWT_ISSUER=abc\0def\n"
                 b"AUTH_PORT=8123\n"):
        write(env_path, data)
        r = check(cwd)
        assert r.returncode == 2 and b"NUL" in r.stderr and \
            b"line 1" in r.stderr, r.stderr
    # another program's long line, and a long comment: skipped
    write(env_path, b"OTHER_APP_BLOB=" + b"x" * 6000 + b"\n# " +
          b"y" * 6000 + b"\nAUTH_PORT=8123\n")
    r = check(cwd)
    assert r.returncode == 0, r.stderr
    # ours stay bounded
    write(env_path, b"AUTH_JWT_ISSUER=" + b"z" * 6000 + b"\n")
    r = check(cwd)
    assert r.returncode == 2 and b"line 1" in r.stderr, r.stderr


def test_files_others_can_write_are_refused():
    """A key file or .env that others can write (group or world writable,
    another user's, or in a folder they can write to) was used: the key
    with a warning that it was readable, the .env without a word. Whoever
    can write either signs as the daemon (their key; or AUTH_JWT_ALG=HS256
    and their secret), as with a keys folder others can write, which was
    already refused. Both stop `config check` and a start with exit 2."""
    cwd = scratch("cli-")
    key = os.path.join(cwd, "key.pem")
    write(key, ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    env_path = os.path.join(cwd, ".env")
    write(env_path, b"AUTH_JWT_ISSUER=perm-test\n")
    os.chmod(key, 0o600)
    os.chmod(env_path, 0o600)
    os.chmod(cwd, 0o700)
    ok = check(cwd, {"AUTH_JWT_KEY_FILE": key})
    assert ok.returncode == 0, ok.stderr
    cases = [(key, 0o666, None), (key, 0o620, None), (env_path, 0o602, None),
             (env_path, 0o660, None), (cwd, 0o777, None)]
    if os.geteuid() == 0:
        cases += [(key, 0o600, 65534), (env_path, 0o600, 65534)]
    for path, mode, owner in cases:
        os.chmod(path, mode)
        if owner is not None:
            os.chown(path, owner, owner)
        r = check(cwd, {"AUTH_JWT_KEY_FILE": key})
        assert r.returncode == 2, (path, oct(mode), r)
        assert b"others can" in r.stderr, r.stderr
        assert r.stderr.count(b"\n") == 1, r.stderr
        r = subprocess.run([BIN], cwd=cwd, capture_output=True, timeout=30,
                           env={"PATH": os.environ.get("PATH", "/bin"),
                                "AUTH_HOST": "127.0.0.1", "AUTH_PORT": "0",
                                "AUTH_DATA_DIR": cwd,
                                "AUTH_JWT_KEY_FILE": key})   # the start
        assert r.returncode == 2 and b"others can" in r.stderr, r.stderr
        os.chmod(path, 0o700 if path == cwd else 0o600)
        if owner is not None:
            os.chown(path, 0, 0)
    os.chmod(cwd, 0o1777)                  # sticky, as /tmp: nobody else
    r = check(cwd, {"AUTH_JWT_KEY_FILE": key})  # can swap another's file
    assert r.returncode == 0, r.stderr
    os.chmod(key, 0o644)                   # only readable: a warning
    r = check(cwd, {"AUTH_JWT_KEY_FILE": key})
    assert r.returncode == 0, r.stderr
