#!/usr/bin/env bash
# Interoperability check against an SMTP catcher nobody here wrote: maildev (npm, pinned by
# package-lock.json). Starts maildev and the release binary on free loopback ports, registers
# through curl (async and sync), and checks the mails through maildev's GET /api/email.
# Usage: tests/e2e/maildev-e2e.sh [path/to/signup-queue]   (default: target/release/signup-queue)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/release/signup-queue}
[ -x "$bin" ] || { echo "e2e: binary $bin not found; run cargo build --release" >&2; exit 1; }
[ -x "$here/node_modules/.bin/maildev" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
fail() {
  echo "e2e: FAILED: $*" >&2
  echo "---- app log ----" >&2; tail -n 50 "$work/app.log" >&2 || true
  echo "---- maildev log ----" >&2; tail -n 20 "$work/maildev.log" >&2 || true
  exit 1
}
wait_for() { # url, what
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  fail "$2 did not answer at $1"
}

smtp_port=$(free_port); web_port=$(free_port); app_port=$(free_port)
mkdir -p "$work/mails"
"$here/node_modules/.bin/maildev" --ip 127.0.0.1 --web-ip 127.0.0.1 --smtp "$smtp_port" --web "$web_port" \
  --mail-directory "$work/mails" >"$work/maildev.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$web_port/api/email" "maildev"

SMTP_URL="smtp://127.0.0.1:$smtp_port" BIND="127.0.0.1:$app_port" ADMIN_BIND=off \
  DATABASE_URL="sqlite://$work/e2e.db" HASH_COST=test NO_COLOR=1 \
  "$bin" serve >"$work/app.log" 2>&1 &
pids+=($!)
app="http://127.0.0.1:$app_port"
wait_for "$app/health" "signup-queue"

register() { # path, email, name
  curl -s -o "$work/response.json" -w '%{http_code}' -X POST "$app$1" -H 'content-type: application/json' \
    -d "{\"email\":\"$2\",\"password\":\"correct horse\",\"name\":\"$3\"}"
}
status=$(register /register ada-e2e@example.com "Ada Lovelace")
[ "$status" = 201 ] || fail "async register answered $status: $(cat "$work/response.json")"
status=$(register /register/sync bob-e2e@example.com "Bob Builder")
[ "$status" = 201 ] || fail "sync register answered $status: $(cat "$work/response.json")"

check_mail() { # address, name
  local mail
  for _ in $(seq 1 100); do
    mail=$(curl -fs "http://127.0.0.1:$web_port/api/email" | jq -c --arg to "$1" \
      '[.[] | select(any(.to[]; .address == $to) and .subject == "Welcome to Signup Queue")] | first // empty')
    [ -n "$mail" ] && break
    sleep 0.1
  done
  [ -n "$mail" ] || fail "no mail to $1 reached maildev"
  jq -e '.subject == "Welcome to Signup Queue"' <<<"$mail" >/dev/null || fail "subject: $(jq -r .subject <<<"$mail")"
  jq -e --arg n "$2" '.to[0].name == $n' <<<"$mail" >/dev/null || fail "To name for $1: $(jq -c .to <<<"$mail")"
  jq -e --arg n "Hello $2" '.text | contains($n)' <<<"$mail" >/dev/null || fail "text part for $1 does not greet $2"
  jq -e --arg n "Hello $2" '.html | contains($n)' <<<"$mail" >/dev/null || fail "HTML part for $1 does not greet $2"
  echo "e2e: mail to $1 arrived in maildev: To, Subject, text and HTML parts checked"
}
check_mail ada-e2e@example.com "Ada Lovelace"
check_mail bob-e2e@example.com "Bob Builder"
# The async registration also feeds the coupon consumer: its mail carries a code.
coupon=$(curl -fs "http://127.0.0.1:$web_port/api/email" | jq -c '[.[] | select(.subject == "Your signup coupon")] | first // empty')
[ -n "$coupon" ] || fail "no coupon mail reached maildev"
jq -e '.text | test("WELCOME-[A-Z0-9]{8}")' <<<"$coupon" >/dev/null || fail "the coupon mail carries no code"
echo "e2e: coupon mail to ada-e2e@example.com arrived with its code"
echo "e2e: maildev interoperability check passed"
