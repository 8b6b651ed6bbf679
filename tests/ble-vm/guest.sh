#!/bin/bash
# Runs inside the qemu guest (tests/ble-vm/run.sh): start D-Bus, two emulated LE controllers
# and bluetoothd, then test the real CLI (btleplug, on hci0) against the virtual device served
# as a BlueZ peripheral (bluer, on hci1). Each check prints "ok NAME" or "FAIL NAME: why".
W=$1 R=$2
B=$R/target/debug/bluesphere
D=$R/target/debug/bluesphere-device
export BLUESPHERE_BLE_ADAPTER=hci0 HOME=/root RUST_BACKTRACE=0
cd /tmp
say() { echo "ble-vm: $*"; }
fails=0
ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

mkdir -p /run/dbus
dbus-daemon --system --fork --nopidfile || { say "no dbus-daemon"; exit 3; }
# btvirt's controllers need AF_ALG ecb(aes) and cmac(aes); instantiate them once before the
# kernel's first HCI_Reset (its 2 s timeout).
python3 - <<'PY'
import socket
for t, n in (("skcipher", "ecb(aes)"), ("hash", "cmac(aes)")):
    s = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    s.bind((t, n))
    s.close()
PY
up=0
for try in 1 2 3; do
  btvirt -L -l2 >/tmp/btvirt.log 2>&1 &
  bv=$!
  for _ in $(seq 1 50); do
    [ "$(btmgmt info 2>/dev/null | grep -c '^hci')" -ge 2 ] && { up=1; break; }
    sleep 0.2
  done
  [ $up = 1 ] && break
  kill $bv 2>/dev/null; sleep 1
done
[ $up = 1 ] || { say "the emulated controllers did not come up"; exit 3; }
/usr/libexec/bluetooth/bluetoothd -n -E >/tmp/bluetoothd.log 2>&1 &
adapter_up() {
  dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
    org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address >/dev/null 2>&1
}
for _ in $(seq 1 100); do adapter_up hci0 && adapter_up hci1 && break; sleep 0.2; done
adapter_up hci0 && adapter_up hci1 || { say "bluetoothd does not show hci0 and hci1"; exit 3; }
btmgmt -i hci0 power on >/dev/null 2>&1
btmgmt -i hci1 power on >/dev/null 2>&1
say "stack up: 2 LE controllers, bluetoothd $(/usr/libexec/bluetooth/bluetoothd -v)"

# 1. A device that is not there: a clear error, exit code 7, nothing pushed.
out=$("$B" --json push "$W/update.bsp" --ble 00:11:22:33:44:55 --reconnect-for 5 2>/dev/null); rc=$?
if [ $rc = 7 ] && echo "$out" | grep -q '"kind":"no-port"' && echo "$out" | grep -q 'advertised within'; then
  ok "absent device: $(echo "$out" | sed 's/.*"message":"\([^"]*\)".*/\1/')"
else
  fail "absent device" "rc=$rc $out"
fi

: >"$W/peripheral.log" # this run's device log only (a retried VM starts a new one)
periph() {
  "$D" --flash "$W/dev" --op-delay-us "${OP_DELAY_US:-2000}" serve --ble --adapter hci1 --auto-confirm \
    >>"$W/peripheral.log" 2>&1 &
  pp=$!
  for _ in $(seq 1 100); do grep -q 'over Bluetooth LE' "$W/peripheral.log" && return 0; sleep 0.1; done
  return 1
}
periph || { fail "peripheral" "$(tail -3 "$W/peripheral.log")"; exit 1; }

# 2. Scan by service UUID: the device shows its product and hardware before connecting.
id=""
for _ in 1 2 3; do
  scan=$("$B" --json scan --timeout 4 2>&1)
  id=$(echo "$scan" | python3 -c 'import json,sys
d=json.load(sys.stdin)["devices"]
print(next((x["id"] for x in d if x.get("name")=="ble-demo revA"),""))' 2>/dev/null)
  [ -n "$id" ] && break
done
[ -n "$id" ] && ok "scan finds ble-demo revA at $id" || fail "scan" "$scan"

# 3. info over BLE.
info=$("$B" --json info --ble "$id" 2>&1)
echo "$info" | grep -q '"product":"ble-demo"' && echo "$info" | grep -q '"version":"1.0.0"' &&
  ok "info over BLE: ble-demo 1.0.0" || fail "info" "$info"

# 4. Push (a delta in 4 KiB blocks: a device resumes within 4 KiB); the device loses power
#    mid-transfer (kill -9) and comes back (a restarted device drops the old connection); the
#    push finds it again by scanning and resumes where the device says.
"$B" --json push "$W/update.bsp" --ble "$id" --reconnect-for 90 >"$W/push.json" 2>"$W/push.err" &
push=$!
cut=0
for _ in $(seq 1 1200); do
  # The device logs "received N of M payload bytes" every 4 KiB it takes in; at 8 KiB its
  # journal holds at least the first 4 KiB block.
  if grep -q 'received \(8192\|12288\) of' "$W/peripheral.log"; then
    kill -9 $pp; cut=1; sleep 1
    say "power cut of the device mid-transfer ($(grep -o 'received [0-9]* of [0-9]*' "$W/peripheral.log" | tail -1)); restarting it"
    periph || fail "peripheral restart" "$(tail -3 "$W/peripheral.log")"
    break
  fi
  kill -0 $push 2>/dev/null || break
  sleep 0.05
done
wait $push; rc=$?
res=$(cat "$W/push.json")
if [ $rc = 0 ] && [ $cut = 1 ]; then
  if msg=$(python3 - "$W/push.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["reconnects"] >= 1 and r["max_resume"] > 0 and r["bytes_resent"] < r["payload_len"]:
    print(f"resumed at byte {r['max_resume']} of {r['payload_len']} after {r['reconnects']} reconnect(s), "
          f"{r['bytes_resent']} bytes sent again, {r['seconds']:.1f} s")
else:
    print(json.dumps(r)); sys.exit(1)
PY
  ); then ok "push survives a power cut and resumes: $msg"; else fail "resume" "$msg"; fi
else
  fail "push" "rc=$rc cut=$cut $res"
  { echo "== hci0 connections"; btmgmt -i hci0 con; echo "== hci1 connections"; btmgmt -i hci1 con
    echo "== hci1"; btmgmt -i hci1 info; btmgmt -i hci1 advinfo
    echo "== scan"; "$B" --json scan --timeout 4
    echo "== bluetoothd"; tail -20 /tmp/bluetoothd.log; } 2>&1 | sed 's/^/diag: /' >> "$W/diag.log"
fi
sleep 1
kill -9 $pp 2>/dev/null; wait $pp 2>/dev/null

# 5. The device's running image is byte-identical to the new image.
"$D" --flash "$W/dev" read-image -o "$W/installed.bin" >/dev/null 2>"$W/read.err" &&
  cmp -s "$W/installed.bin" "$W/new.bin" && ok "installed image is byte-identical to the target ($(stat -c %s "$W/new.bin") bytes)" ||
  fail "image" "$(cat "$W/read.err") $(cmp "$W/installed.bin" "$W/new.bin" 2>&1)"
st=$("$D" --json --flash "$W/dev" status 2>&1)
echo "$st" | grep -q '"phase":"confirmed"' && ok "device confirmed the new image" || fail "status" "$st"
exit $fails
