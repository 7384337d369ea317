; 2x2 max pooling, stride 2: a 4x4 image of 4 channels -> 2x2 x 4 (lanes=4).
; HWC layout: input at AMEM 0..63 (a pixel is 4 addresses, a row 16), output at 64..79.
; VLD/VMAX read one element per lane: lane l takes channel l of the addressed pixel.
.config lanes=4

        SETI r1, 0              ; window of output pixel (0, 0)
        SETI r2, 64             ; output pixel (0, 0)
        LOOP 2, rows
        LOOP 2, pixels
        VLD  r1, 4, 4           ; A = pixel (0, 0) of the window; on to (0, 1)
        VMAX r1, 4, 12          ; (0, 1); on to (1, 0): one row down, one pixel back
        VMAX r1, 4, 4           ; (1, 0)
        VMAX r1, 4, -12         ; (1, 1); on to the next window, two pixels right of (0, 0)
        STORE r2, 4, 4
pixels: ADDI r1, r1, 16         ; after two windows, skip the window's second row
rows:   HALT

.amem 0    -36  -53  112   58   39   -2  -55   90  114  -73  -66  -48   -6  -62  -25  122
.amem 16   -34  112    0  -41  111  -17   70  -48  127   63   96 -118 -101 -111    8  -25
.amem 32   122  -66  -85   88  -51   61  -54   11 -108   41  106   49   97   71   17  109
.amem 48    -6  -90   14   32  -83  -92   41  -15   -5   73   47  101  -86   66   10 -119
.region input 0 64
.region output 64 16
