"""One network probe for the CIFAR-100 pipeline: can this machine reach a URL right now?

Both the CIFAR-100 download (:mod:`.data`) and the backbone weights (:mod:`.backbone`) ask it before
a download that would otherwise hang or retry for a minute offline.  It goes through the normal
HTTP stack (``urllib.request`` with its default handlers), so ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
``NO_PROXY`` are honoured exactly as the download itself will honour them: behind a proxy the probe
connects through the proxy instead of failing on a direct socket.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

from ..validation import positive_scalar


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a ``HEAD`` request for ``url`` gets any HTTP answer within about ``timeout`` seconds.

    Any status but a proxy's 502/504 counts as reachable (a 403 or 405 still proves the route
    works); a refused or
    timed-out connection, a failed name lookup, a proxy that refuses the tunnel, or no answer within
    ``timeout`` (name lookup included: the request runs on a helper thread) gives False."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
    timeout = positive_scalar("timeout", timeout)
    answer: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "cvxattn-probe"})
        try:  # a fresh opener: its ProxyHandler reads the proxy variables now (urlopen's is built once)
            with urllib.request.build_opener().open(request, timeout=timeout):
                answer.append(True)
        except urllib.error.HTTPError as exc:  # the server answered with a status; a proxy's
            answer.append(exc.code not in (502, 504))  # bad gateway / gateway timeout: it could not
        except (OSError, ValueError):  # URLError, refused, timed out, DNS, tunnel refused
            answer.append(False)

    worker = threading.Thread(target=probe, name="cvxattn-net-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(answer and answer[0])
