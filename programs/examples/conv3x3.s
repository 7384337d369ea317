; 3x3 convolution, stride 1, padding 1, with bias, requantization and ReLU:
; a 4x4 image of 2 channels -> 4x4 x 4 channels (lanes=4: one output channel per lane).
; Feature maps are channel-innermost (HWC): the padded input, 6x6x2, is at AMEM 0..71 and
; the output, 4x4x4, at 72..135.  A kernel row of 3 pixels x 2 channels is 6 consecutive
; addresses, so each kernel row is one MAC loop.  Weights: WMEM word (ky*3 + kx)*2 + ci.
.config lanes=4

        SETI r1, 0              ; window of output pixel (0, 0)
        SETI r2, 72             ; output pixel (0, 0)
        SETI r3, 0              ; bias: BMEM word 0
        SETI r4, 1              ; requantization: BMEM word 1
        LOOP 4, rows            ; output rows
        LOOP 4, pixels          ; output pixels of a row
        BIAS r3, 0              ; A[l] = bias[l]
        SETI r0, 0              ; weight word of (ky, kx, ci) = (0, 0, 0)
        LOOP 6, k0
        MAC r0, 1, r1, 1        ; kernel row 0
k0:     ADDI r1, r1, 6          ; down one padded row, back 3 pixels: (6 - 3) * 2
        LOOP 6, k1
        MAC r0, 1, r1, 1        ; kernel row 1
k1:     ADDI r1, r1, 6
        LOOP 6, k2
        MAC r0, 1, r1, 1        ; kernel row 2
k2:     ADDI r1, r1, -28        ; next window: one pixel right of the first row (2 - 24 - 6)
        REQ r4, 0, 1            ; requantize, then ReLU
        STORE r2, 4, 4          ; 4 channels; the next output pixel is 4 further
pixels: ADDI r1, r1, 4          ; after 4 windows (8 addresses on), the next row starts at 12
rows:   HALT

; padded input, one padded row (6 pixels x 2 channels) per line
.amem 0      0    0    0    0    0    0    0    0    0    0    0    0
.amem 12     0    0  123  123  -94  -76  -50   13   82   -5    0    0
.amem 24     0    0  123  -38  109   23   56  -68   23   77    0    0
.amem 36     0    0   98   94  119  -96   71   -9   47  -58    0    0
.amem 48     0    0 -125 -107  121  101  -51  -18  -67  -91    0    0
.amem 60     0    0    0    0    0    0    0    0    0    0    0    0
; weights as integers v * 2^7, four output channels per word
.wint 0   -80  -16   64    0
.wint 1    96   40 -112  160
.wint 2   -48  128    0    0
.wint 3   -40   24    8  112
.wint 4    24   40   32  -16
.wint 5     8   24   40  128
.wint 6   -64   48  128 -112
.wint 7   -96  112  144  -16
.wint 8   -80   64  112  128
.wint 9     0  -80   64  -48
.wint 10  128  -64   56  -64
.wint 11  -64  -96  -24    0
.wint 12  112  128  128  -80
.wint 13  128  112  -40   48
.wint 14   32    8 -112    0
.wint 15   56   64   48  -48
.wint 16  -80   40    8  128
.wint 17  -40  144 -128    0
.bmem 0 1085 -2443 1183 -2893
; requantization per channel: multiplier (v * 2^7) and shift
.req 1  128 16  96 16  128 15  64 15
.region input 0 72
.region output 72 64
