; Four dot products of one 8-element vector, one per lane:
;     out[l] = sat(rnd(sum_i x[i] * w[i][l] * m[l], s[l]))
; x is at AMEM 0..7, the result at 16..19.  The weights are integers v * 2^7 (v has two
; signed power-of-two digits: 112 = 1 - 1/8, 160 = 1 + 1/4), so each product is two
; shifts and one add.
.config lanes=4

        SETI r0, 0              ; WMEM word of x[0]
        SETI r1, 0              ; AMEM address of x[0]
        SETI r2, 0              ; requantization parameters: BMEM word 0
        SETI r3, 16             ; where the four results go
        CLR                     ; the sums start at zero (BIAS would start at a bias)
        LOOP 8, done            ; zero-overhead loop over the body up to 'done'
        MAC r0, 1, r1, 1        ; A[l] += x[i] * w[i][l] for all lanes; i += 1
done:   REQ r2, 0, 0            ; back to 8 bits: multiply by 1.0 (128), shift 15, no ReLU
        STORE r3, 4, 0          ; four lanes to AMEM 16..19
        HALT

.wint 0  112   48   80   56
.wint 1   96   64   96   48
.wint 2  -24   56 -112  -48
.wint 3  -80   24   48 -128
.wint 4  -40   32 -112  192
.wint 5  -80   48   24  -24
.wint 6  160  -16  112 -128
.wint 7   56  144  -80   96
.req 0  128 15  128 15  96 15  64 14
.amem 0 -74 -75 59 -1 18 20 42 -95
.region input 0 8
.region output 16 4
