;; FastCDC's gear-hash scan (src/repo/chunker.ts, FastCdc.cut) in WebAssembly, over buffers
;; that live in a shared memory (src/repo/gearscan.ts), so the chunker reads them in place.
;; Source of src/repo/gearscan-wasm.ts: rebuild it with `node scripts/build-wasm.mjs`.
;; Memory layout: the 256-entry u32 gear table at offset 0, buffers after it.
(module
  (import "env" "memory" (memory 1 65536 shared))
  ;; scan(p, normalEnd, end, maskS, maskL): rolls h = (h << 1) + gear[byte] from p with h = 0;
  ;; below normalEnd a cut is where (h & maskS) == 0, then up to end where (h & maskL) == 0.
  ;; Returns the position just after the cut byte, or -1 when there is no cut before end.
  (func (export "scan") (param $p i32) (param $normalEnd i32) (param $end i32) (param $ms i32) (param $ml i32) (result i32)
    (local $h i32)
    (block $normal
      (loop $next
        (br_if $normal (i32.ge_u (local.get $p) (local.get $normalEnd)))
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1)) (i32.load (i32.shl (i32.load8_u (local.get $p)) (i32.const 2)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $next (i32.and (local.get $h) (local.get $ms)))
        (return (local.get $p))))
    (block $large
      (loop $next
        (br_if $large (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1)) (i32.load (i32.shl (i32.load8_u (local.get $p)) (i32.const 2)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $next (i32.and (local.get $h) (local.get $ml)))
        (return (local.get $p))))
    (i32.const -1)))
