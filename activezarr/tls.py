"""Why a TLS certificate failed verification, in the TLS library's words, and what to do.

The reason (expired, issued for another host, signed by an unknown CA) sits two or three
exceptions deep under what requests, urllib3, aiohttp or fsspec raise; ``tls_reason`` digs it
out, ``tls_hint`` turns it into the fix, which depends on whether a CA bundle was given.
"""

from __future__ import annotations

import ssl


def tls_failure(exc: BaseException) -> BaseException | None:
    """The ``ssl`` error under ``exc`` (through causes, contexts, ``reason``, aiohttp's
    ``certificate_error`` and exception arguments), or None."""
    todo, seen = [exc], set()
    found = None
    while todo and len(seen) < 30:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if getattr(e, "verify_message", None):  # (aiohttp's subclass lacks it: look deeper)
            return e
        if isinstance(e, ssl.SSLError | ssl.CertificateError) and found is None:
            found = e
        inner = [
            e.__cause__,
            e.__context__,
            getattr(e, "reason", None),
            getattr(e, "certificate_error", None),
            getattr(e, "os_error", None),
            *e.args,
        ]
        todo += [i for i in inner if isinstance(i, BaseException)]
    return found


def tls_reason(exc: BaseException) -> str | None:
    """The verification failure in words (e.g. "certificate has expired"), or None when
    ``exc`` is not a TLS failure."""
    err = tls_failure(exc)
    if getattr(err, "verify_message", None):
        return err.verify_message
    text = str(err if err is not None else exc)
    marker = "certificate verify failed: "
    if marker in text:
        return text.split(marker, 1)[1].split(" (_ssl")[0]
    if err is not None:
        return getattr(err, "reason", None) or str(err)
    return None


def tls_hint(reason: str, ca: str | None, option: str) -> str:
    """The fix for ``reason``: ``ca`` is the CA bundle given (None: the system's), ``option``
    how to give one (e.g. ``server_ca='/path/ca.pem'``)."""
    if "expired" in reason or "not yet valid" in reason:
        return "the server's certificate is outside its validity period and must be renewed"
    if "mismatch" in reason or "not valid for" in reason:
        return "the certificate was issued for another host name: use the name it was issued for"
    if ca:
        return f"the CA bundle {ca} did not sign the server's certificate"
    return f"if the server's certificate is not from a public CA, pass {option}"
