"""Credentials never leave the component: `redact` masks the user:password part of every URL in a text
(rtsp://user:pass@camera/... -> rtsp://***@camera/...) before it goes into a result, a status message, a log
line or an error message."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")


def redact(text: str) -> str:
    return _USERINFO.sub(r"\g<scheme>***@", text)
