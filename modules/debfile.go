package modules

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
)

// debInfo is what the package module needs from a .deb: read on the control
// machine, so the host's probe can ask dpkg about the right name and an
// installed package of the same version costs no upload.
type debInfo struct {
	Package      string
	Version      string
	Architecture string
}

// readDebInfo reads the control file of a Debian binary package (an ar
// archive holding debian-binary, control.tar[.gz|.xz] and data.tar.*).
func readDebInfo(data []byte) (*debInfo, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, errors.New("not a Debian package (no ar header)")
	}
	rest := data[len(magic):]
	for len(rest) >= 60 {
		hdr := rest[:60]
		if string(hdr[58:60]) != "`\n" {
			return nil, errors.New("corrupt ar member header")
		}
		name := strings.TrimRight(string(hdr[:16]), " ")
		name = strings.TrimSuffix(name, "/") // GNU ar style
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 || size > int64(len(rest)-60) {
			return nil, fmt.Errorf("corrupt ar member %q size", name)
		}
		body := rest[60 : 60+size]
		rest = rest[60+size:]
		if size%2 == 1 && len(rest) > 0 {
			rest = rest[1:] // members are padded to an even size
		}
		if !strings.HasPrefix(name, "control.tar") {
			continue
		}
		var r io.Reader
		switch strings.TrimPrefix(name, "control.tar") {
		case "":
			r = bytes.NewReader(body)
		case ".gz":
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			r = zr
		case ".xz":
			xr, err := xz.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			r = xr
		default:
			return nil, fmt.Errorf("%s: compression not supported (gokube reads control.tar, .gz and .xz; rebuild with dpkg-deb -Zxz)", name)
		}
		return controlFromTar(r)
	}
	return nil, errors.New("no control.tar member")
}

func controlFromTar(r io.Reader) (*debInfo, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, errors.New("control.tar has no control file")
		}
		if err != nil {
			return nil, fmt.Errorf("control.tar: %w", err)
		}
		if strings.TrimPrefix(h.Name, "./") != "control" {
			continue
		}
		info := &debInfo{}
		sc := bufio.NewScanner(io.LimitReader(tr, 1<<20))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.HasPrefix(k, " ") {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "Package":
				info.Package = v
			case "Version":
				info.Version = v
			case "Architecture":
				info.Architecture = v
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		if info.Package == "" || info.Version == "" {
			return nil, errors.New("control file has no Package or Version")
		}
		return info, nil
	}
}
