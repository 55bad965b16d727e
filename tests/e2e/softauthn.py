"""A software WebAuthn authenticator for end-to-end tests: one credential
(ES256, EdDSA or RS256), attestation "none", and the JSON a browser's
PublicKeyCredential.toJSON() gives for a registration
(RegistrationResponseJSON) and a login (AuthenticationResponseJSON), with
a minimal CBOR encoder for the attestation object and the COSE key.

Every part can be set by hand (counter, flags, client data), so tests can
send what a real browser would and what only a broken or hostile client
would."""
import base64
import hashlib
import json
import secrets
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, \
    padding, rsa

ES256, EDDSA, RS256 = -7, -8, -257
FLAGS_UP_UV = 0x05                  # user present, user verified
FLAG_AT = 0x40                      # attested credential data follows


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---- CBOR: definite lengths, shortest heads (what CTAP2 sends) ----------
def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    if n < 65536:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    if n < 2 ** 32:
        return bytes([major << 5 | 26]) + struct.pack(">I", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)


def cbor(v):
    """The CBOR encoding of `v` (bool, None, int, bytes, str, list,
    dict; a dict keeps its order)."""
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, (bytes, bytearray)):
        return _head(2, len(v)) + bytes(v)
    if isinstance(v, str):
        e = v.encode()
        return _head(3, len(e)) + e
    if isinstance(v, list):
        return _head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return _head(5, len(v)) + b"".join(cbor(k) + cbor(x)
                                            for k, x in v.items())
    raise TypeError(type(v))


class Authenticator:
    """One discoverable credential of algorithm `alg` for RP ID `rp_id`.
    `count` is its signature counter; register() remembers the user
    handle of the options it answers."""

    def __init__(self, alg=ES256, rp_id="localhost", cred_id=None):
        self.alg = alg
        self.rp_id = rp_id
        self.cred_id = cred_id or secrets.token_bytes(16)
        self.count = 0
        self.user_handle = None
        if alg == ES256:
            self.key = ec.generate_private_key(ec.SECP256R1())
        elif alg == EDDSA:
            self.key = ed25519.Ed25519PrivateKey.generate()
        elif alg == RS256:
            self.key = rsa.generate_private_key(65537, 2048)
        else:
            raise ValueError("unsupported alg %r" % alg)

    def cose(self):
        """The public key as a COSE_Key."""
        pub = self.key.public_key()
        if self.alg == ES256:
            n = pub.public_numbers()
            return cbor({1: 2, 3: ES256, -1: 1,
                         -2: n.x.to_bytes(32, "big"),
                         -3: n.y.to_bytes(32, "big")})
        if self.alg == EDDSA:
            raw = pub.public_bytes(serialization.Encoding.Raw,
                                   serialization.PublicFormat.Raw)
            return cbor({1: 1, 3: EDDSA, -1: 6, -2: raw})
        n = pub.public_numbers()
        return cbor({1: 3, 3: RS256, -1: n.n.to_bytes(256, "big"),
                     -2: n.e.to_bytes(3, "big")})

    def sign(self, msg):
        if self.alg == ES256:
            return self.key.sign(msg, ec.ECDSA(hashes.SHA256()))
        if self.alg == EDDSA:
            return self.key.sign(msg)
        return self.key.sign(msg, padding.PKCS1v15(), hashes.SHA256())

    @staticmethod
    def client_data(typ, challenge, origin, extra=None):
        """collectedClientData as a browser serialises it; `extra` adds
        or replaces members (crossOrigin, topOrigin...)."""
        cd = {"type": typ, "challenge": challenge, "origin": origin,
              "crossOrigin": False}
        cd.update(extra or {})
        return json.dumps(cd, separators=(",", ":")).encode()

    def _rp_hash(self):
        return hashlib.sha256(self.rp_id.encode()).digest()

    def register(self, options, origin, cd_extra=None):
        """The RegistrationResponseJSON answering `options` (the
        {"publicKey": ...} of the registration options route)."""
        pk = options["publicKey"]
        self.user_handle = pk["user"]["id"]
        cdj = self.client_data("webauthn.create", pk["challenge"], origin,
                               cd_extra)
        ad = (self._rp_hash() + bytes([FLAGS_UP_UV | FLAG_AT]) +
              struct.pack(">I", self.count) + b"\x00" * 16 +
              struct.pack(">H", len(self.cred_id)) + self.cred_id +
              self.cose())
        att = cbor({"fmt": "none", "attStmt": {}, "authData": ad})
        return {"id": b64u(self.cred_id), "rawId": b64u(self.cred_id),
                "type": "public-key",
                "response": {"clientDataJSON": b64u(cdj),
                             "attestationObject": b64u(att),
                             "transports": ["internal", "hybrid"]},
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform"}

    def assertion(self, options, origin, count=None, cd_extra=None):
        """The AuthenticationResponseJSON answering `options` (the
        {"publicKey": ...} of the login options route), signed with
        counter `count` (default: the counter, moved one ahead)."""
        pk = options["publicKey"]
        if count is None:
            self.count += 1
            count = self.count
        cdj = self.client_data("webauthn.get", pk["challenge"], origin,
                               cd_extra)
        ad = self._rp_hash() + bytes([FLAGS_UP_UV]) + struct.pack(">I",
                                                                  count)
        sig = self.sign(ad + hashlib.sha256(cdj).digest())
        return {"id": b64u(self.cred_id), "rawId": b64u(self.cred_id),
                "type": "public-key",
                "response": {"clientDataJSON": b64u(cdj),
                             "authenticatorData": b64u(ad),
                             "signature": b64u(sig),
                             "userHandle": self.user_handle},
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform"}
