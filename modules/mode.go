package modules

import (
	"fmt"
	"strings"
)

// Symbolic modes ("u=rw,g=r,o=", "u+x", "a-w", "g=u") work as in chmod, so
// playbooks written with them keep working. They are applied in Go to the
// mode the probe saw, so `changed` stays exact.

func symClassShift(c byte) uint {
	switch c {
	case 'u':
		return 6
	case 'g':
		return 3
	}
	return 0
}

// applySymbolic applies a symbolic mode to cur; isDir decides X. It is a
// small hand-written parser of chmod's grammar (clauses of who, operator,
// permissions) whose loop follows the grammar in order, hence its length.
func applySymbolic(cur uint32, isDir bool, sym string) (uint32, error) {
	mode := cur & 0o7777
	for _, clause := range strings.Split(sym, ",") {
		if clause == "" {
			return 0, fmt.Errorf("empty clause in %q", sym)
		}
		i := 0
		var who []byte
		for i < len(clause) && strings.IndexByte("ugoa", clause[i]) >= 0 {
			if clause[i] == 'a' {
				who = append(who, 'u', 'g', 'o')
			} else {
				who = append(who, clause[i])
			}
			i++
		}
		if len(who) == 0 {
			who = []byte{'u', 'g', 'o'}
		}
		if i == len(clause) {
			return 0, fmt.Errorf("%q: missing operator (+, - or =)", clause)
		}
		for i < len(clause) {
			op := clause[i]
			if op != '+' && op != '-' && op != '=' {
				return 0, fmt.Errorf("%q: unexpected %q, want +, - or =", clause, op)
			}
			i++
			var rwx uint32 // permission bits in "other" position (0..7)
			setS, setT := false, false
			for i < len(clause) && strings.IndexByte("+-=", clause[i]) < 0 {
				switch c := clause[i]; c {
				case 'r':
					rwx |= 4
				case 'w':
					rwx |= 2
				case 'x':
					rwx |= 1
				case 'X':
					if isDir || mode&0o111 != 0 {
						rwx |= 1
					}
				case 's':
					setS = true
				case 't':
					setT = true
				case 'u', 'g', 'o':
					rwx |= (mode >> symClassShift(c)) & 7
				default:
					return 0, fmt.Errorf("%q: unknown permission %q", clause, c)
				}
				i++
			}
			for _, w := range who {
				shift := symClassShift(w)
				bits := rwx << shift
				var sbits uint32
				switch {
				case w == 'u' && setS:
					sbits = 0o4000
				case w == 'g' && setS:
					sbits = 0o2000
				case w == 'o' && setT:
					sbits = 0o1000
				}
				switch op {
				case '+':
					mode |= bits | sbits
				case '-':
					mode &^= bits | sbits
				case '=':
					clear := uint32(7) << shift
					switch w {
					case 'u':
						clear |= 0o4000
					case 'g':
						clear |= 0o2000
					case 'o':
						clear |= 0o1000
					}
					mode = mode&^clear | bits | sbits
				}
			}
		}
	}
	return mode, nil
}
