#!/usr/bin/env python3
"""A point of sale talking to a till's stocksync daemon: a reference client.

Standard library only. It finds the daemon through the till's data directory
(``daemon.json`` names the API address, ``api.token`` holds the bearer token),
posts sales with an idempotency key and reads stock and status.

    python3 pos_client.py --data /var/lib/stocksync sell TSHIRT-M 2
    python3 pos_client.py --data /var/lib/stocksync stock TSHIRT-M
    python3 pos_client.py --data /var/lib/stocksync status

The one rule a POS must follow: make the sale's id (the idempotency key)
*before* the first attempt and reuse it for every retry. A sale whose answer
was lost (a timeout, a dropped connection, the daemon restarting) is then
retried safely: the daemon applies it once and answers the retry with
``"replayed": true`` and the first answer's figures. A real POS would also
store the id with the ticket before sending, so a POS that crashes mid-sale
retries with it after its own restart (``--id``).

Exit codes (the same as the ``stocksync`` command line, plus 4):
    0  done
    1  anything else (the daemon failed to store the event, an unexpected answer)
    2  bad input (quantity, SKU name, unknown SKU, an id reused for another event,
       an event the fleet roster does not permit)
    3  refused by the escrow rule: not enough rights to sell that many
    4  the daemon is down or did not answer in time; for a sale the outcome is
       unknown: retry with the printed id (it is applied at most once)
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

EXIT_OK, EXIT_OTHER, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

# API error codes (docs/daemon.md, "Errors") and what the POS does with them.
BAD_INPUT = {
    "malformed_request", "invalid_input", "missing_field", "field_not_applicable",
    "unknown_kind", "unknown_sku", "duplicate_event_id", "not_permitted",
    "record_not_allowed", "payload_too_large", "overflow", "event_refused",
}
REFUSED = {"insufficient_rights"}
# Answers after which the event was certainly not acknowledged: retrying
# with the same id is safe and may succeed (the daemon is restarting).
RETRYABLE_STATUS = {503}


def note(message):
    """A progress line on standard error."""
    print(message, file=sys.stderr)


class Unreachable(Exception):
    """The daemon could not be reached, or did not answer in time."""


class ApiError(Exception):
    """The daemon answered with an error document."""

    def __init__(self, status, code, message):
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status, self.code, self.message = status, code, message


class Till:
    """The API of one till's daemon."""

    def __init__(self, data_dir, api=None, timeout=5.0):
        data_dir = Path(data_dir)
        if api is None:
            try:
                info = json.loads((data_dir / "daemon.json").read_text())
            except FileNotFoundError:
                raise Unreachable(f"no daemon runs on {data_dir} (no daemon.json)")
            except (OSError, ValueError) as e:
                raise Unreachable(f"cannot read {data_dir / 'daemon.json'}: {e}")
            api = "http://" + info["api"]
        try:
            self.token = (data_dir / "api.token").read_text().strip()
        except OSError as e:
            raise Unreachable(f"cannot read the API token in {data_dir}: {e}")
        self.base = api.rstrip("/")
        self.timeout = timeout

    def request(self, method, path, body=None):
        """One HTTP request; the decoded JSON answer, or ApiError / Unreachable."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
                code, message = err["code"], err["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "unexpected", f"HTTP {e.code} {e.reason}"
            raise ApiError(e.code, code, message)
        except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
            raise Unreachable(f"{self.base}: {getattr(e, 'reason', e)}")

    def sell(self, sku, qty, sale_id=None, attempts=4, backoff=0.2, log=note):
        """Sells `qty` of `sku`; retries with the SAME id when no answer came.

        Returns the daemon's answer (its "replayed" field says whether this
        id had been applied before). Raises ApiError for a refusal and
        Unreachable when every attempt failed (outcome unknown).
        """
        sale_id = sale_id or f"pos-{uuid.uuid4()}"
        event = {"kind": "sell", "sku": sku, "qty": qty, "id": sale_id}
        for attempt in range(1, attempts + 1):
            try:
                _, answer = self.request("POST", "/v1/events", event)
                return answer
            except ApiError as e:
                if e.status not in RETRYABLE_STATUS or attempt == attempts:
                    raise
                reason = str(e)
            except Unreachable as e:
                if attempt == attempts:
                    raise Unreachable(
                        f"{e}; sale {sale_id} may or may not be applied: "
                        f"retry with --id {sale_id}"
                    )
                reason = str(e)
            delay = backoff * 2 ** (attempt - 1)
            log(f"attempt {attempt} for sale {sale_id} failed ({reason}); "
                f"retrying in {delay:.1f}s with the same id")
            time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def stock(self, sku=None):
        """The stock rows (all SKUs, or one)."""
        return self.request("GET", "/v1/stock" + (f"/{sku}" if sku else ""))[1]

    def status(self):
        """The daemon's status document."""
        return self.request("GET", "/v1/status")[1]


def positive_int(text):
    """A quantity: a whole number above zero."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be above zero: {n}")
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description="A POS client of a stocksync till.")
    ap.add_argument("--data", required=True, help="the till's data directory")
    ap.add_argument("--api", help="API base URL (default: from DIR/daemon.json)")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds to wait for each answer (default 5)")
    ap.add_argument("--attempts", type=int, default=4,
                    help="attempts per sale when no answer comes (default 4)")
    ap.add_argument("--json", action="store_true", help="print the answer as JSON")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sell", help="sell QTY units of SKU")
    s.add_argument("sku")
    s.add_argument("qty", type=positive_int)
    s.add_argument("--id", help="the sale's idempotency key (default: a new UUID)")
    st = sub.add_parser("stock", help="stock rows, of one SKU or all")
    st.add_argument("sku", nargs="?")
    sub.add_parser("status", help="the daemon's node and sync status")
    args = ap.parse_args(argv)  # exits 2 on bad usage

    try:
        till = Till(args.data, api=args.api, timeout=args.timeout)
        if args.cmd == "sell":
            answer = till.sell(args.sku, args.qty, sale_id=args.id,
                               attempts=max(1, args.attempts))
            if args.json:
                print(json.dumps(answer))
            else:
                how = "replayed (applied before)" if answer["replayed"] else "sold"
                print(f"{how}: {answer['qty']} x {args.sku}, id {answer['id']}, "
                      f"on hand {answer['on_hand_after']}, "
                      f"rights {answer['rights_after']}")
        elif args.cmd == "stock":
            rows = till.stock(args.sku)
            if args.json:
                print(json.dumps(rows))
            else:
                for row in rows:
                    print(f"{row['sku']:<16} {row['location']:<10} "
                          f"on hand {row['on_hand']:>6}  held {row['held']:>4}  "
                          f"rights {row['rights']:>6}  deficit {row['deficit']}")
        else:
            st = till.status()
            if args.json:
                print(json.dumps(st))
            else:
                node = st["node"]
                up = sum(1 for p in st.get("peers", []) if p.get("connected"))
                print(f"node {node['name']} ({node['role']}) at {node['location']}, "
                      f"{up} peer(s) connected")
        return EXIT_OK
    except Unreachable as e:
        print(f"daemon unreachable: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as e:
        if e.code in REFUSED:
            print(f"refused: {e.message}", file=sys.stderr)
            return EXIT_REFUSED
        if e.code in BAD_INPUT or e.status == 422:
            print(f"bad input: {e.message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"error: {e}", file=sys.stderr)
        return EXIT_OTHER


if __name__ == "__main__":
    sys.exit(main())
