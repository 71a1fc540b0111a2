#!/usr/bin/env bash
# Flotilla's balancer vs HAProxy vs nginx, in front of the same two backends, under the same wrk
# load, in one run; first with one worker thread each (HAProxy nbthread 1, nginx worker_processes 1,
# flotilla lb --threads 1), then with two. Prints requests/s and p50/p99 latency per peer and the
# ratios Flotilla/HAProxy and Flotilla/nginx.
#
#   bench/lb.sh                      # defaults: 10 s per run, 64 connections, GET /
#   DURATION=30s CONNECTIONS=128 bench/lb.sh
#
# Everything binds 127.0.0.1; every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/}
BASE_PORT=${BASE_PORT:-18000}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need haproxy || ! need nginx || ! need wrk; then
  echo "installing haproxy nginx wrk (Debian packages)" >&2
  apt-get update -qq && apt-get install -y -qq haproxy nginx wrk >/dev/null
fi
cargo build --release --quiet --bin flotilla
FLOTILLA=$PWD/target/release/flotilla

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

B0=$((BASE_PORT + 80)); B1=$((BASE_PORT + 81))
P_FLOTILLA=$((BASE_PORT + 0)); P_HAPROXY=$((BASE_PORT + 1)); P_NGINX=$((BASE_PORT + 2))

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}

# The backends: Flotilla's workload server, as every local member runs it.
"$FLOTILLA" workload --name b0 --listen 127.0.0.1:$B0 >"$WORK/b0.log" 2>&1 & PIDS+=($!)
"$FLOTILLA" workload --name b1 --listen 127.0.0.1:$B1 >"$WORK/b1.log" 2>&1 & PIDS+=($!)
wait_port $B0; wait_port $B1

start_flotilla() {
  "$FLOTILLA" lb --threads "$1" --listen 127.0.0.1:$P_FLOTILLA --health-path /healthz \
    --backend 127.0.0.1:$B0 --backend 127.0.0.1:$B1 >"$WORK/flotilla.log" 2>&1 &
  echo $!
}
start_haproxy() {
  cat >"$WORK/haproxy.cfg" <<CFG
global
  nbthread $1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:$P_HAPROXY
  default_backend b
backend b
  balance leastconn
  http-reuse always
  option httpchk GET /healthz
  server b0 127.0.0.1:$B0 check inter 1s
  server b1 127.0.0.1:$B1 check inter 1s
CFG
  haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  echo $!
}
start_nginx() {
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx.conf" <<CFG
worker_processes $1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream b { least_conn; server 127.0.0.1:$B0; server 127.0.0.1:$B1; keepalive 128; }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CFG
  nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
  echo $!
}

# wrk's output → "rps p50_ms p99_ms errors"
measure() {
  local port=$1
  wrk -t1 -c16 -d2s "http://127.0.0.1:$port$PATH_UNDER_TEST" >/dev/null 2>&1 || true   # warm-up
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port$PATH_UNDER_TEST" >"$WORK/wrk.out" 2>&1
  python3 - "$WORK/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
e = (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {e}")
PY
}

declare -A RESULT
for threads in 1 2; do
  for peer in flotilla haproxy nginx; do
    pid=$("start_$peer" "$threads"); PIDS+=("$pid")
    case $peer in flotilla) port=$P_FLOTILLA ;; haproxy) port=$P_HAPROXY ;; nginx) port=$P_NGINX ;; esac
    wait_port "$port"; sleep 1.5   # let health checks admit both backends
    RESULT[$peer,$threads]=$(measure "$port")
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
done

echo
echo "load: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION GET $PATH_UNDER_TEST, two backends (flotilla workload), $(nproc) cores"
printf "%-8s %-9s %10s %9s %9s %7s\n" threads peer "req/s" "p50 ms" "p99 ms" errors
for threads in 1 2; do
  for peer in flotilla haproxy nginx; do
    read -r rps p50 p99 errs <<<"${RESULT[$peer,$threads]}"
    printf "%-8s %-9s %10s %9s %9s %7s\n" "$threads" "$peer" "$rps" "$p50" "$p99" "$errs"
  done
done
echo
for threads in 1 2; do
  read -r f_rps _ f_p99 _ <<<"${RESULT[flotilla,$threads]}"
  for peer in haproxy nginx; do
    read -r rps _ p99 _ <<<"${RESULT[$peer,$threads]}"
    python3 -c "print(f'threads $threads: flotilla/$peer  req/s {${f_rps}/${rps}:.2f}x   p99 {${f_p99}/${p99}:.2f}x')"
  done
done
