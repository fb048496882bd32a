package thumbnail_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/image/bmp"
	"golang.org/x/image/draw"

	"github.com/shoestring-go/shoestring/tasks/thumbnail"
)

// goroot is the GOROOT of the go command on PATH. runtime.GOROOT is
// deprecated and empty in binaries built with -trimpath.
var goroot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// stdlibImage returns the file rel (slash-separated, relative to
// $GOROOT/src/image) from the standard library's image test data, which holds
// real photographs in the encodings this package must read. It skips the test
// when there is no go command or the GOROOT has no test data.
func stdlibImage(tb testing.TB, rel string) []byte {
	tb.Helper()
	root, err := goroot()
	if errors.Is(err, exec.ErrNotFound) {
		tb.Skipf("no go command to find GOROOT: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "src", "image", filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		tb.Skipf("GOROOT lacks image test data: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// rgb is an 8-bit colour; alpha is always opaque in a JPEG.
type rgb struct{ R, G, B int }

var (
	white = rgb{255, 255, 255}
	red   = rgb{255, 0, 0}
	blue  = rgb{0, 0, 255}
	grey  = rgb{128, 128, 128}
)

func (c rgb) RGBA() (r, g, b, a uint32) {
	return uint32(c.R) * 0x101, uint32(c.G) * 0x101, uint32(c.B) * 0x101, 0xFFFF
}

// within makes cmp treat ints that differ by at most tolerance as equal, for
// colours that went through lossy JPEG.
func within(tolerance int) cmp.Option {
	return cmp.Comparer(func(a, b int) bool { return max(a-b, b-a) <= tolerance })
}

// at returns the 8-bit colour of img at (x, y) composited over white.
func at(img image.Image, x, y int) rgb {
	r, g, b, a := img.At(x, y).RGBA()
	over := func(v uint32) int { return int((v + 0xFFFF - a) >> 8) }
	return rgb{over(r), over(g), over(b)}
}

// meanOverWhite returns the mean 8-bit R, G and B of img composited over white.
// Resampling keeps the mean, so it is an oracle for a thumbnail's colours that
// does not share this package's drawing code.
func meanOverWhite(img image.Image) [3]float64 {
	var sum [3]float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := at(img, x, y)
			sum[0] += float64(c.R)
			sum[1] += float64(c.G)
			sum[2] += float64(c.B)
		}
	}
	n := float64(b.Dx() * b.Dy())
	return [3]float64{sum[0] / n, sum[1] / n, sum[2] / n}
}

// meanAbsDiff returns the mean absolute difference of the 8-bit channels of two
// images of the same size.
func meanAbsDiff(tb testing.TB, a, b image.Image) float64 {
	tb.Helper()
	if a.Bounds() != b.Bounds() {
		tb.Fatalf("bounds %v and %v differ", a.Bounds(), b.Bounds())
	}
	var sum int
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ca, cb := at(a, x, y), at(b, x, y)
			sum += max(ca.R-cb.R, cb.R-ca.R) + max(ca.G-cb.G, cb.G-ca.G) + max(ca.B-cb.B, cb.B-ca.B)
		}
	}
	return float64(sum) / float64(3*r.Dx()*r.Dy())
}

// render decodes data with no practical pixel limit and renders it at width,
// checking that the JPEG it returns has the dimensions Render reports.
func render(tb testing.TB, data []byte, width int) image.Image {
	tb.Helper()
	img, info, err := thumbnail.Decode(data, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	out, w, h, err := thumbnail.Render(img, info, width)
	if err != nil {
		tb.Fatal(err)
	}
	thumb, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		tb.Fatalf("output is not a JPEG: %v", err)
	}
	if got := thumb.Bounds(); got != image.Rect(0, 0, w, h) {
		tb.Fatalf("output JPEG is %v, Render said %dx%d", got, w, h)
	}
	return thumb
}

// ignoreCost leaves Info.DecodeBytes, an estimate TestCost checks on its own, out of
// comparisons.
var ignoreCost = cmpopts.IgnoreFields(thumbnail.Info{}, "DecodeBytes")

func TestRealImages(t *testing.T) {
	t.Parallel()
	video := thumbnail.Info{Format: "jpeg", Width: 150, Height: 103, Orientation: 1}
	withFormat := func(i thumbnail.Info, format string) thumbnail.Info {
		i.Format = format
		return i
	}
	tests := []struct {
		name string
		file string
		want thumbnail.Info
		// decoded is the type the standard decoder returns, to show which
		// draw paths are covered.
		decoded string
		// golden is the same picture losslessly encoded (as paired in
		// $GOROOT/src/image/decode_test.go); thumbnails of the two must
		// differ by at most goldenDiff per channel on average.
		golden     string
		goldenDiff float64
	}{
		{"baseline jpeg", "testdata/video-001.jpeg", video, "*image.YCbCr", "testdata/video-001.png", 3},
		{"progressive jpeg", "testdata/video-001.progressive.jpeg", video, "*image.YCbCr", "testdata/video-001.png", 3},
		{"cmyk jpeg", "testdata/video-001.cmyk.jpeg", video, "*image.CMYK", "testdata/video-001.cmyk.png", 3},
		{"jpeg sampled 2x2 1x1 1x2", "testdata/video-001.221212.jpeg", video, "*image.YCbCr", "testdata/video-001.221212.png", 3},
		{"jpeg sampled 4:1:0", "testdata/video-001.q50.410.jpeg", video, "*image.YCbCr", "testdata/video-001.png", 6},
		{"rgb jpeg", "testdata/video-001.rgb.jpeg", video, "*image.RGBA", "testdata/video-001.rgb.png", 3},
		{"grayscale jpeg", "testdata/video-005.gray.jpeg", video, "*image.Gray", "testdata/video-005.gray.png", 3},
		{"grayscale progressive jpeg", "testdata/video-005.gray.q50.progressive.jpeg", video, "*image.Gray", "testdata/video-005.gray.png", 4},
		{"png", "testdata/video-001.png", withFormat(video, "png"), "*image.RGBA", "", 0},
		{"grayscale png", "testdata/video-005.gray.png", withFormat(video, "png"), "*image.Gray", "", 0},
		{"gif", "testdata/video-001.gif", withFormat(video, "gif"), "*image.Paletted", "testdata/video-001.png", 6},
		{"interlaced gif", "testdata/video-001.interlaced.gif", withFormat(video, "gif"), "*image.Paletted", "testdata/video-001.png", 6},
		{"transparent gif", "testdata/triangle-001.gif", thumbnail.Info{Format: "gif", Width: 256, Height: 128, Orientation: 1}, "*image.Paletted", "", 0},
		{"png with alpha", "png/testdata/pngsuite/basn6a08.png", thumbnail.Info{Format: "png", Width: 32, Height: 32, Orientation: 1}, "*image.NRGBA", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := stdlibImage(t, tc.file)

			info, err := thumbnail.Inspect(data)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if diff := cmp.Diff(tc.want, info, ignoreCost); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}
			img, info, err := thumbnail.Decode(data, 1<<20)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tc.want, info, ignoreCost); diff != "" {
				t.Errorf("Decode info (-want +got):\n%s", diff)
			}
			if got := fmt.Sprintf("%T", img); got != tc.decoded {
				t.Errorf("Decode returned %s, want %s", got, tc.decoded)
			}
			wantMean := meanOverWhite(img)

			// 1000 is wider than every image: it must not be upscaled.
			for _, width := range []int{50, 1000} {
				wantW := min(width, tc.want.Width)
				wantH := int(math.Round(float64(tc.want.Height) * float64(wantW) / float64(tc.want.Width)))
				out, w, h, err := thumbnail.Render(img, info, width)
				if err != nil {
					t.Fatalf("Render(%d): %v", width, err)
				}
				if diff := cmp.Diff([2]int{wantW, wantH}, [2]int{w, h}); diff != "" {
					t.Errorf("Render(%d) size (-want +got):\n%s", width, diff)
				}
				thumb, err := jpeg.Decode(bytes.NewReader(out))
				if err != nil {
					t.Fatalf("Render(%d) output is not a JPEG: %v", width, err)
				}
				if got, want := thumb.Bounds(), image.Rect(0, 0, wantW, wantH); got != want {
					t.Errorf("Render(%d) output JPEG is %v, want %v", width, got, want)
				}
				// 4 levels allows for JPEG and ringing at the sharp
				// red-on-white edges of triangle-001.gif at 50 pixels.
				if diff := cmp.Diff(wantMean, meanOverWhite(thumb), cmpopts.EquateApprox(0, 4)); diff != "" {
					t.Errorf("Render(%d) mean colour over white (-source +thumbnail):\n%s", width, diff)
				}
			}

			if tc.golden != "" {
				got := render(t, data, 50)
				want := render(t, stdlibImage(t, tc.golden), 50)
				if d := meanAbsDiff(t, want, got); d > tc.goldenDiff {
					t.Errorf("thumbnail differs from that of %s by %.2f per channel, want <= %v", tc.golden, d, tc.goldenDiff)
				}
			}
		})
	}
}

// quadrantsJPEG returns an 80x40 JPEG whose top-left quadrant is red, top-right
// quadrant blue and bottom half grey, so that every flip and rotation moves
// the red and blue quadrants to a different pair of places.
func quadrantsJPEG(tb testing.TB) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 80, 40))
	draw.Draw(img, img.Bounds(), image.NewUniform(grey), image.Point{}, draw.Src)
	draw.Draw(img, image.Rect(0, 0, 40, 20), image.NewUniform(red), image.Point{}, draw.Src)
	draw.Draw(img, image.Rect(40, 0, 80, 20), image.NewUniform(blue), image.Point{}, draw.Src)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 100}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// withSegments returns the JPEG jpg with the given raw bytes (whole marker
// segments) inserted right after its SOI marker, where Exif puts APP1.
func withSegments(tb testing.TB, jpg []byte, segments ...[]byte) []byte {
	tb.Helper()
	if !bytes.HasPrefix(jpg, []byte{0xFF, 0xD8}) {
		tb.Fatal("not a JPEG: no SOI")
	}
	out := append([]byte(nil), jpg[:2]...)
	for _, s := range segments {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

// segment returns a JPEG marker segment: 0xFF, marker, big-endian length
// (counting itself) and payload (ITU-T T.81 B.1.1.4).
func segment(marker byte, payload []byte) []byte {
	out := []byte{0xFF, marker}
	out = binary.BigEndian.AppendUint16(out, uint16(2+len(payload)))
	return append(out, payload...)
}

// ifdEntry is one 12-byte TIFF IFD entry whose value field starts with short.
type ifdEntry struct {
	tag, typ uint16
	count    uint32
	short    uint16
}

func orientationEntry(v uint16) ifdEntry { return ifdEntry{tag: 0x0112, typ: 3, count: 1, short: v} }

// modelEntry is an inline 4-byte ASCII Model tag, there to be skipped.
var modelEntry = ifdEntry{tag: 0x0110, typ: 2, count: 4, short: 0x4142}

// tiff returns a TIFF structure (TIFF 6.0 §2): byte-order mark, magic, offset
// of IFD0, and IFD0 with entries and a zero next-IFD offset. IFD0 is written
// at byte 8 whatever ifdOffset says, so bad offsets can be tested.
func tiff(order binary.AppendByteOrder, magic uint16, ifdOffset uint32, entries ...ifdEntry) []byte {
	out := []byte("MM")
	if order == binary.LittleEndian {
		out = []byte("II")
	}
	out = order.AppendUint16(out, magic)
	out = order.AppendUint32(out, ifdOffset)
	out = order.AppendUint16(out, uint16(len(entries)))
	for _, e := range entries {
		out = order.AppendUint16(out, e.tag)
		out = order.AppendUint16(out, e.typ)
		out = order.AppendUint32(out, e.count)
		out = order.AppendUint16(out, e.short)
		out = append(out, 0, 0)
	}
	return order.AppendUint32(out, 0)
}

// exifAPP1 returns an APP1 segment holding "Exif\0\0" and the TIFF structure t
// (Exif 2.32 §4.5.4).
func exifAPP1(t []byte) []byte {
	return segment(0xE1, append([]byte("Exif\x00\x00"), t...))
}

// orientedJPEG returns jpg with an Exif APP1 segment giving orientation o.
func orientedJPEG(tb testing.TB, jpg []byte, order binary.AppendByteOrder, o uint16) []byte {
	tb.Helper()
	return withSegments(tb, jpg, exifAPP1(tiff(order, 42, 8, modelEntry, orientationEntry(o))))
}

type quadrant int

const (
	topLeft quadrant = iota
	topRight
	bottomLeft
	bottomRight
)

// centre returns the centre pixel of quadrant q of a w x h image.
func (q quadrant) centre(w, h int) (x, y int) {
	x, y = w/4, h/4
	if q == topRight || q == bottomRight {
		x = 3 * w / 4
	}
	if q == bottomLeft || q == bottomRight {
		y = 3 * h / 4
	}
	return x, y
}

func TestOrientation(t *testing.T) {
	t.Parallel()
	base := quadrantsJPEG(t)
	// Where the stored top-left (red) and top-right (blue) quadrants are
	// displayed, from the row/column description of each Orientation value in
	// TIFF 6.0 §8 (e.g. 6: "the 0th row represents the visual right-hand side
	// of the image, and the 0th column represents the visual top").
	tests := []struct {
		orientation   uint16
		red, blue     quadrant
		width, height int
	}{
		{1, topLeft, topRight, 80, 40},
		{2, topRight, topLeft, 80, 40},
		{3, bottomRight, bottomLeft, 80, 40},
		{4, bottomLeft, bottomRight, 80, 40},
		{5, topLeft, bottomLeft, 40, 80},
		{6, topRight, bottomRight, 40, 80},
		{7, bottomRight, topRight, 40, 80},
		{8, bottomLeft, topLeft, 40, 80},
	}
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%v/%d", order, tc.orientation), func(t *testing.T) {
				t.Parallel()
				data := orientedJPEG(t, base, order, tc.orientation)
				info, err := thumbnail.Inspect(data)
				if err != nil {
					t.Fatal(err)
				}
				want := thumbnail.Info{Format: "jpeg", Width: 80, Height: 40, Orientation: int(tc.orientation)}
				if diff := cmp.Diff(want, info, ignoreCost); diff != "" {
					t.Errorf("Inspect (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([2]int{tc.width, tc.height}, [2]int{info.DisplayWidth(), info.DisplayHeight()}); diff != "" {
					t.Errorf("display size (-want +got):\n%s", diff)
				}
				// Full size, and half size to exercise scaling at the
				// transposed size before rotating.
				for _, scale := range []int{1, 2} {
					thumb := render(t, data, tc.width/scale)
					w, h := thumb.Bounds().Dx(), thumb.Bounds().Dy()
					if diff := cmp.Diff([2]int{tc.width / scale, tc.height / scale}, [2]int{w, h}); diff != "" {
						t.Errorf("1/%d size (-want +got):\n%s", scale, diff)
					}
					for q := topLeft; q <= bottomRight; q++ {
						want := grey
						switch q {
						case tc.red:
							want = red
						case tc.blue:
							want = blue
						}
						x, y := q.centre(w, h)
						if diff := cmp.Diff(want, at(thumb, x, y), within(40)); diff != "" {
							t.Errorf("1/%d colour of quadrant %d at (%d,%d) (-want +got):\n%s", scale, q, x, y, diff)
						}
					}
				}
			})
		}
	}
}

func TestInspectExif(t *testing.T) {
	t.Parallel()
	base := quadrantsJPEG(t)
	le, be := binary.LittleEndian, binary.BigEndian
	withIFD := func(order binary.AppendByteOrder, entries ...ifdEntry) []byte {
		return exifAPP1(tiff(order, 42, 8, entries...))
	}
	badOrder := tiff(le, 42, 8, orientationEntry(6))
	copy(badOrder, "IM")
	// Claims three entries but holds one (not the orientation) and is cut
	// off inside the second.
	shortIFD := tiff(le, 42, 8, modelEntry, orientationEntry(6))
	binary.LittleEndian.PutUint16(shortIFD[8:], 3)
	shortIFD = shortIFD[:10+12+5]
	longType := ifdEntry{tag: 0x0112, typ: 4, count: 1, short: 6}
	twoShorts := ifdEntry{tag: 0x0112, typ: 3, count: 2, short: 6}
	xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))
	jfif := segment(0xE0, []byte("JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00"))
	// With a JFIF APP0, image/jpeg reads the configuration from SOF and
	// stops, so Inspect succeeds and the Exif walk meets a segment whose
	// length runs past the end of the data.
	cutExif := withIFD(le, orientationEntry(6))
	cutOff := slices.Concat([]byte{0xFF, 0xD8}, jfif, sof0(80, 40), cutExif[:len(cutExif)-8])
	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"no exif", base, 1},
		{"exif segment cut off", cutOff, 1},
		{"little endian", withSegments(t, base, withIFD(le, orientationEntry(6))), 6},
		{"big endian", withSegments(t, base, withIFD(be, orientationEntry(8))), 8},
		{"after other tags", withSegments(t, base, withIFD(be, modelEntry, modelEntry, orientationEntry(3))), 3},
		{"after JFIF APP0", withSegments(t, base, jfif, withIFD(le, orientationEntry(6))), 6},
		{"after XMP APP1", withSegments(t, base, xmp, withIFD(be, orientationEntry(6))), 6},
		{"fill bytes before marker", withSegments(t, base, []byte{0xFF, 0xFF}, withIFD(le, orientationEntry(6))), 6},
		{"first exif wins", withSegments(t, base, withIFD(le, orientationEntry(3)), withIFD(le, orientationEntry(6))), 3},
		{"first exif decides even if malformed", withSegments(t, base, withIFD(le, orientationEntry(9)), withIFD(le, orientationEntry(6))), 1},
		{"no orientation tag", withSegments(t, base, withIFD(le, modelEntry)), 1},
		{"orientation 0", withSegments(t, base, withIFD(le, orientationEntry(0))), 1},
		{"orientation 9", withSegments(t, base, withIFD(le, orientationEntry(9))), 1},
		{"type LONG", withSegments(t, base, withIFD(le, longType)), 1},
		{"count 2", withSegments(t, base, withIFD(le, twoShorts)), 1},
		{"magic 43", withSegments(t, base, exifAPP1(tiff(le, 43, 8, orientationEntry(6)))), 1},
		{"byte order IM", withSegments(t, base, exifAPP1(badOrder)), 1},
		{"IFD offset past end", withSegments(t, base, exifAPP1(tiff(be, 42, 1000, orientationEntry(6)))), 1},
		{"IFD offset near 2^32", withSegments(t, base, exifAPP1(tiff(be, 42, math.MaxUint32-1, orientationEntry(6)))), 1},
		{"entries past end", withSegments(t, base, exifAPP1(shortIFD)), 1},
		{"no TIFF header", withSegments(t, base, segment(0xE1, []byte("Exif\x00\x00II"))), 1},
		{"exif in APP2", withSegments(t, base, segment(0xE2, append([]byte("Exif\x00\x00"), tiff(le, 42, 8, orientationEntry(6))...))), 1},
		{"exif after EOI", append(append([]byte(nil), base...), withIFD(le, orientationEntry(6))...), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			info, err := thumbnail.Inspect(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			want := thumbnail.Info{Format: "jpeg", Width: 80, Height: 40, Orientation: tc.want}
			if diff := cmp.Diff(want, info, ignoreCost); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}
		})
	}
}

// pngHeader returns a PNG signature and an IHDR chunk, with a correct CRC, for
// an 8-bit RGBA image of w x h pixels, and no pixel data (PNG spec §5.3, §11.2.2).
func pngHeader(w, h uint32) []byte {
	ihdr := []byte("IHDR")
	ihdr = binary.BigEndian.AppendUint32(ihdr, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // depth, colour type RGBA, compression, filter, interlace
	out := []byte("\x89PNG\r\n\x1a\n")
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)-4))
	out = append(out, ihdr...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(ihdr))
}

// jpegHeader returns SOI, a baseline SOF0 for a one-component w x h image and
// an SOS header, with no tables and no scan data (ITU-T T.81 B.2.2, B.2.3).
// image/jpeg reads up to SOS for the configuration unless there is a JFIF
// APP0, because an Adobe APP14 there could change the colour model.
func jpegHeader(w, h uint16) []byte {
	sos := []byte{1, 1, 0, 0, 63, 0} // one component, tables 0, spectral 0..63
	out := append([]byte{0xFF, 0xD8}, sof0(w, h)...)
	return append(out, segment(0xDA, sos)...)
}

// sof0 returns a baseline SOF0 segment for a one-component w x h image.
func sof0(w, h uint16) []byte {
	sof := []byte{8}
	sof = binary.BigEndian.AppendUint16(sof, h)
	sof = binary.BigEndian.AppendUint16(sof, w)
	sof = append(sof, 1, 1, 0x11, 0) // one component: id, 1x1 sampling, table 0
	return segment(0xC0, sof)
}

// gifHeader returns a GIF89a header and logical screen descriptor for w x h
// pixels with no colour table, then the trailer (GIF89a §17, §18).
func gifHeader(w, h uint16) []byte {
	out := []byte("GIF89a")
	out = binary.LittleEndian.AppendUint16(out, w)
	out = binary.LittleEndian.AppendUint16(out, h)
	return append(out, 0, 0, 0, ';')
}

// allocatedPerRun returns the heap bytes f allocates, averaged over runs.
// The caller must not run in parallel with other tests.
func allocatedPerRun(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestDecompressionBomb is not parallel: it measures heap allocation, which
// other tests running at the same time would inflate.
func TestDecompressionBomb(t *testing.T) {
	const maxPixels = 50_000_000
	const budget = 1 << 20 // bytes
	tests := []struct {
		name string
		data []byte
		want thumbnail.Info
	}{
		{"png", pngHeader(100_000, 100_000), thumbnail.Info{Format: "png", Width: 100_000, Height: 100_000, Orientation: 1}},
		{"jpeg", jpegHeader(65_535, 65_535), thumbnail.Info{Format: "jpeg", Width: 65_535, Height: 65_535, Orientation: 1}},
		{"gif", gifHeader(65_535, 65_535), thumbnail.Info{Format: "gif", Width: 65_535, Height: 65_535, Orientation: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := thumbnail.Inspect(tc.data)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if diff := cmp.Diff(tc.want, info, ignoreCost); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}

			img, info, err := thumbnail.Decode(tc.data, maxPixels)
			if !errors.Is(err, thumbnail.ErrTooLarge) {
				t.Fatalf("Decode error = %v, want ErrTooLarge", err)
			}
			if img != nil {
				t.Errorf("Decode returned an image with ErrTooLarge")
			}
			if diff := cmp.Diff(tc.want, info, ignoreCost); diff != "" {
				t.Errorf("Decode info (-want +got):\n%s", diff)
			}
			pixels := fmt.Sprint(int64(tc.want.Width) * int64(tc.want.Height))
			for _, s := range []string{pixels, fmt.Sprint(maxPixels)} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}

			inspect := allocatedPerRun(20, func() { _, _ = thumbnail.Inspect(tc.data) })
			decode := allocatedPerRun(20, func() { _, _, _ = thumbnail.Decode(tc.data, maxPixels) })
			if inspect > budget || decode > budget {
				t.Errorf("allocated %d bytes in Inspect and %d in Decode, want <= %d each", inspect, decode, budget)
			}
		})
	}
}

func TestDecodeLimit(t *testing.T) {
	t.Parallel()
	data := stdlibImage(t, "testdata/video-001.jpeg")
	const pixels = 150 * 103
	tests := []struct {
		maxPixels int64
		tooLarge  bool
	}{
		{pixels, false},
		{pixels - 1, true},
		{0, true},
		{-1, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.maxPixels), func(t *testing.T) {
			t.Parallel()
			img, _, err := thumbnail.Decode(data, tc.maxPixels)
			if got := errors.Is(err, thumbnail.ErrTooLarge); got != tc.tooLarge {
				t.Fatalf("Decode error = %v, want ErrTooLarge %v", err, tc.tooLarge)
			}
			if !tc.tooLarge && (err != nil || img == nil) {
				t.Fatalf("Decode = %v, %v; want an image", img, err)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	var bmpData bytes.Buffer
	if err := bmp.Encode(&bmpData, image.NewRGBA(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		// mention is what the error must name.
		mention string
	}{
		{"text", []byte("hello"), `"hello"`},
		{"empty", nil, `""`},
		// The test imports x/image/bmp, which registers "bmp" with the image
		// package: Inspect must still refuse it.
		{"bmp", bmpData.Bytes(), "bmp"},
		{"png signature only", []byte("\x89PNG\r\n\x1a\n"), "png"},
		{"gif signature only", []byte("GIF89a"), "gif"},
		{"jpeg SOI only", []byte{0xFF, 0xD8}, "jpeg"},
		{"png 0x0", pngHeader(0, 0), "png"},
		{"gif 0x10", gifHeader(0, 10), "gif"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := thumbnail.Inspect(tc.data)
			if !errors.Is(err, thumbnail.ErrUnsupported) {
				t.Fatalf("Inspect error = %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Inspect error %q does not mention %s", err, tc.mention)
			}
			if _, _, err := thumbnail.Decode(tc.data, 1<<30); !errors.Is(err, thumbnail.ErrUnsupported) {
				t.Errorf("Decode error = %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, format string
	}{
		{"testdata/video-001.jpeg", "jpeg"},
		{"testdata/video-001.png", "png"},
		{"testdata/video-001.gif", "gif"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			t.Parallel()
			data := stdlibImage(t, tc.file)
			data = data[:len(data)/2]
			info, err := thumbnail.Inspect(data)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			want := thumbnail.Info{Format: tc.format, Width: 150, Height: 103, Orientation: 1}
			if diff := cmp.Diff(want, info, ignoreCost); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}
			img, _, err := thumbnail.Decode(data, 1<<20)
			if err == nil || img != nil {
				t.Fatalf("Decode = %T, %v; want an error", img, err)
			}
			if errors.Is(err, thumbnail.ErrUnsupported) || errors.Is(err, thumbnail.ErrTooLarge) {
				t.Errorf("Decode error = %v, want a decode error", err)
			}
			if prefix := "decode " + tc.format + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("Decode error %q does not start with %q", err, prefix)
			}
		})
	}
}

func TestTransparencyOverWhite(t *testing.T) {
	t.Parallel()
	// Three 20-pixel columns: fully transparent with a red colour that must
	// not show, half-transparent red, opaque blue.
	src := image.NewNRGBA(image.Rect(0, 0, 60, 20))
	draw.Draw(src, image.Rect(0, 0, 20, 20), image.NewUniform(color.NRGBA{255, 0, 0, 0}), image.Point{}, draw.Src)
	draw.Draw(src, image.Rect(20, 0, 40, 20), image.NewUniform(color.NRGBA{255, 0, 0, 128}), image.Point{}, draw.Src)
	draw.Draw(src, image.Rect(40, 0, 60, 20), image.NewUniform(color.NRGBA{0, 0, 255, 255}), image.Point{}, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	pink := rgb{255, 127, 127}
	for _, width := range []int{60, 30} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			t.Parallel()
			thumb := render(t, buf.Bytes(), width)
			w, h := thumb.Bounds().Dx(), thumb.Bounds().Dy()
			got := []rgb{at(thumb, w/6, h/2), at(thumb, w/2, h/2), at(thumb, 5*w/6, h/2)}
			if diff := cmp.Diff([]rgb{white, pink, blue}, got, within(12)); diff != "" {
				t.Errorf("column colours (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGIFFrameSmallerThanScreen(t *testing.T) {
	t.Parallel()
	frame := image.NewPaletted(image.Rect(20, 0, 40, 20), color.Palette{blue})
	var buf bytes.Buffer
	err := gif.EncodeAll(&buf, &gif.GIF{
		Image:  []*image.Paletted{frame},
		Delay:  []int{0},
		Config: image.Config{Width: 40, Height: 20, ColorModel: color.Palette{blue}},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, info, err := thumbnail.Decode(buf.Bytes(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := img.Bounds(), image.Rect(0, 0, 40, 20); got != want {
		t.Errorf("Decode bounds = %v, want %v", got, want)
	}
	out, w, h, err := thumbnail.Render(img, info, 40)
	if err != nil {
		t.Fatal(err)
	}
	thumb, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	got := []rgb{at(thumb, w/4, h/2), at(thumb, 3*w/4, h/2)}
	if diff := cmp.Diff([]rgb{white, blue}, got, within(12)); diff != "" {
		t.Errorf("left and right colours (-want +got):\n%s", diff)
	}
}

func TestRenderRejectsMismatch(t *testing.T) {
	t.Parallel()
	img := image.NewRGBA(image.Rect(0, 0, 40, 20))
	tests := []struct {
		name string
		info thumbnail.Info
	}{
		{"wrong size", thumbnail.Info{Format: "png", Width: 20, Height: 40, Orientation: 1}},
		{"orientation 0", thumbnail.Info{Format: "png", Width: 40, Height: 20}},
		{"orientation 9", thumbnail.Info{Format: "png", Width: 40, Height: 20, Orientation: 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if data, _, _, err := thumbnail.Render(img, tc.info, 10); err == nil {
				t.Errorf("Render returned %d bytes and no error", len(data))
			}
		})
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		info  thumbnail.Info
		width int
		wantW int
		wantH int
	}{
		{"downscale", thumbnail.Info{Width: 150, Height: 103, Orientation: 1}, 50, 50, 34},
		{"no upscale", thumbnail.Info{Width: 150, Height: 103, Orientation: 1}, 1000, 150, 103},
		{"zero width", thumbnail.Info{Width: 150, Height: 103, Orientation: 1}, 0, 1, 1},
		{"negative width", thumbnail.Info{Width: 150, Height: 103, Orientation: 1}, -5, 1, 1},
		{"rounds half up", thumbnail.Info{Width: 4, Height: 2, Orientation: 1}, 3, 3, 2},
		{"rounds down", thumbnail.Info{Width: 3, Height: 2, Orientation: 1}, 2, 2, 1},
		{"at least one high", thumbnail.Info{Width: 10_000, Height: 1, Orientation: 1}, 50, 50, 1},
		{"orientation 6 swaps", thumbnail.Info{Width: 40, Height: 20, Orientation: 6}, 10, 10, 20},
		{"orientation 6 no upscale", thumbnail.Info{Width: 40, Height: 20, Orientation: 6}, 100, 20, 40},
		{"orientation 3 keeps", thumbnail.Info{Width: 40, Height: 20, Orientation: 3}, 10, 10, 5},
		{"huge", thumbnail.Info{Width: math.MaxInt32, Height: 1 << 30, Orientation: 1}, 1000, 1000, 500},
		{"huge unscaled", thumbnail.Info{Width: math.MaxInt32, Height: math.MaxInt32, Orientation: 1}, math.MaxInt32, math.MaxInt32, math.MaxInt32},
		{"empty", thumbnail.Info{}, 100, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, h := thumbnail.Size(tc.info, tc.width)
			if diff := cmp.Diff([2]int{tc.wantW, tc.wantH}, [2]int{w, h}); diff != "" {
				t.Errorf("Size(%+v, %d) (-want +got):\n%s", tc.info, tc.width, diff)
			}
		})
	}
}

func FuzzInspect(f *testing.F) {
	base := quadrantsJPEG(f)
	f.Add([]byte("hello"))
	f.Add(base[:200])
	f.Add(orientedJPEG(f, base, binary.LittleEndian, 6)[:200])
	f.Add(orientedJPEG(f, base, binary.BigEndian, 8)[:200])
	f.Add(withSegments(f, jpegHeader(10, 20), exifAPP1(tiff(binary.BigEndian, 42, 8, orientationEntry(5)))))
	f.Add(pngHeader(100_000, 100_000))
	f.Add(gifHeader(3, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := thumbnail.Inspect(data)
		if err != nil {
			if !errors.Is(err, thumbnail.ErrUnsupported) {
				t.Fatalf("Inspect error %v does not wrap ErrUnsupported", err)
			}
			return
		}
		if info.Orientation < 1 || info.Orientation > 8 {
			t.Errorf("Orientation = %d, want 1..8", info.Orientation)
		}
		if info.Width < 1 || info.Height < 1 {
			t.Errorf("size %dx%d, want positive", info.Width, info.Height)
		}
		if info.Format != "jpeg" && info.Orientation != 1 {
			t.Errorf("%s has Orientation %d, want 1", info.Format, info.Orientation)
		}
	})
}

func BenchmarkRender(b *testing.B) {
	photo := stdlibImage(b, "testdata/video-001.jpeg")
	// The standard library's photographs are 150 pixels wide, so width 320
	// leaves them unscaled; a 10x enlargement, re-encoded as a JPEG so that it
	// decodes to *image.YCbCr like a camera's, gives a realistic downscale.
	small, err := jpeg.Decode(bytes.NewReader(photo))
	if err != nil {
		b.Fatal(err)
	}
	large := image.NewRGBA(image.Rect(0, 0, 1500, 1030))
	draw.CatmullRom.Scale(large, large.Bounds(), small, small.Bounds(), draw.Src, nil)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, large, &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"video-001.jpeg", photo},
		{"video-001.jpeg_x10", buf.Bytes()},
		{"video-001.cmyk.jpeg", stdlibImage(b, "testdata/video-001.cmyk.jpeg")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			img, info, err := thumbnail.Decode(bc.data, 1<<30)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := thumbnail.Render(img, info, 320); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
