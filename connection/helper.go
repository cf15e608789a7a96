package connection

// The session helper: one process per session that does the small
// changes (renames, directories, links, owners, modes, removals) that
// would otherwise each start a program on the host.

// sessionHelper is the session's helper, a perl program (perl-base is
// Essential on Debian; without perl, every program runs as before). A
// cold run renames every file it writes into place and makes directories,
// links and owners, and a process start costs 10-30 ms on a busy host:
// one helper for the session instead of a program per change. It is
// started at the first request that runs in the session's shell and needs
// it (gk_mv, gk_x, gk_hs; a subshell request gets gk_H=0 and neither
// descriptor, so it never starts one), with the session's umask (gk_u)
// for the parents mkdir -p makes: the shell makes two FIFOs in its
// private temp files; perl opens both read-write (no wait for a peer),
// forks and the parent exits, so the shell's own opens never wait (it
// opens the answer FIFO read-write first, read-only, then closes the
// first). On the shell's "h" the helper reopens the request FIFO
// read-only, so the shell's end (its descriptors close) is the helper's
// end of input, removes both names and answers "ok PID".
//
// Requests, one line each part (a part with a newline never goes to it),
// answered 0 when done and 1 when not, and then the program runs and says
// why (or does what the helper does not):
//   - "r", source, destination: a rename (gk_mv; 1 for a directory at the
//     destination, which mv moves into);
//   - "u", a name, "": the name removed unless it is a directory (the
//     session's end, gk_rm; 0 when it is gone);
//   - "x", a count, that many arguments: a command (gk_x, which the
//     session's mkdir, install, ln, chown, chgrp and chmod functions
//     call) in exactly the forms gokube writes: mkdir -p [-m OCTAL] -- /P
//     where P is absent (parents u+wx under the umask, as mkdir -p
//     makes them), install -d -m OCTAL [-o O] [-g G] -- /P in an existing
//     directory, ln -s -- S /D, chown [-h] -- O[:G] /P, chgrp [-h] -- G /P
//     (names resolved as the programs do: a name first, then a number;
//     -h on a symbolic link is left to the program: lchown is in POSIX.pm,
//     whose load costs three times a chown's start),
//     chmod [--] OCTAL /P of a regular file (a directory's set-id bits
//     are chmod's own rule). Anything else is declined. A directory it
//     made and could not finish is removed before it declines, so the
//     program starts from the same state.
//
// The helper's death is the end of the shell's answer FIFO (no writer
// left): the programs again. It is in the shell's process group, so a
// cancellation's kill ends it too; no single quote may appear in it.
const sessionHelper = `$SIG{PIPE} = "IGNORE";
my ($i, $o, $m) = @ARGV;
umask(oct($m)) if defined $m && $m =~ /^[0-7]{1,4}$/;
open(my $r, "+<", $i) or exit 1;
open(my $w, "+<", $o) or exit 1;
my $p = fork;
exit 1 unless defined $p;
exit 0 if $p;
defined(<$r>) or exit 1;
open(my $q, "<", $i) or exit 1;
close $r;
$r = $q;
unlink $i, $o;
select((select($w), $| = 1)[0]);
print $w "ok $$\n";
sub id {
	my ($n, $user) = @_;
	return -1 if $n eq "";
	my $v = $user ? getpwnam($n) : getgrnam($n);
	return defined $v ? $v : $n =~ /^[0-9]+$/ ? $n : undef;
}
sub absp { $_[0] =~ m{^/} && $_[0] !~ m{(^|/)\.\.?(/|$)} }
sub mode { defined $_[0] && $_[0] =~ /^0?[0-7]{3}$/ }
sub mkp {
	my ($d, $m) = @_;
	return 0 if -e $d || -l $d;
	my @c = grep { $_ ne "" } split m{/}, $d;
	my $last = pop @c;
	return 0 unless defined $last;
	my $p = "";
	for (@c) {
		$p .= "/$_";
		next if -d $p;
		return 0 if -e $p || -l $p;
		mkdir($p, 0777) or return 0;
		my $pm = (stat $p)[2] & 07777;
		chmod($pm | 0300, $p) or return 0 if ($pm & 0300) != 0300;
	}
	$p .= "/$last";
	return mkdir($p, 0777) unless defined $m;
	mkdir($p, 0700) or return 0;
	chmod($m, $p) and return 1;
	rmdir $p;
	return 0;
}
sub x {
	my $c = shift;
	if ($c eq "mkdir") {
		return 0 unless @_ && shift eq "-p";
		my $m;
		if (@_ && $_[0] eq "-m") { shift; $m = shift; return 0 unless mode($m); $m = oct($m); }
		return @_ == 2 && $_[0] eq "--" && absp($_[1]) ? mkp($_[1], $m) : 0;
	}
	if ($c eq "install") {
		return 0 unless @_ >= 5 && $_[0] eq "-d" && $_[1] eq "-m" && mode($_[2]);
		my $m = oct($_[2]);
		splice @_, 0, 3;
		my ($on, $gn) = ("", "");
		if ($_[0] eq "-o") { (undef, $on) = splice @_, 0, 2; }
		if (@_ && $_[0] eq "-g") { (undef, $gn) = splice @_, 0, 2; }
		return 0 unless @_ == 2 && $_[0] eq "--" && absp($_[1]);
		my ($d, $u, $g) = ($_[1], id($on, 1), id($gn, 0));
		return 0 unless defined $u && defined $g && defined $on && defined $gn;
		(my $up = $d) =~ s{/+[^/]+/*$}{};
		return 0 if -e $d || -l $d || !-d ($up eq "" ? "/" : $up);
		mkdir($d, 0700) or return 0;
		return 1 if ($u == -1 && $g == -1 || chown($u, $g, $d)) && chmod($m, $d);
		rmdir $d;
		return 0;
	}
	if ($c eq "ln") {
		return @_ == 4 && $_[0] eq "-s" && $_[1] eq "--" && absp($_[3]) && $_[3] !~ m{/$} && symlink($_[2], $_[3]) ? 1 : 0;
	}
	if ($c eq "chown" || $c eq "chgrp") {
		my $h = @_ && $_[0] eq "-h" ? shift : "";
		return 0 unless @_ == 3 && $_[0] eq "--" && absp($_[2]);
		my ($u, $g) = (-1, -1);
		if ($c eq "chgrp") {
			$g = id($_[1], 0);
			return 0 if $_[1] eq "";
		} else {
			my @og = split /:/, $_[1], -1;
			return 0 if @og < 1 || @og > 2 || $og[0] eq "" || @og == 2 && $og[1] eq "";
			$u = id($og[0], 1);
			$g = id($og[1], 0) if @og == 2;
		}
		return 0 unless defined $u && defined $g;
		return 0 if $h && -l $_[2];
		return chown($u, $g, $_[2]);
	}
	if ($c eq "chmod") {
		shift if @_ == 3 && $_[0] eq "--";
		return @_ == 2 && $_[0] =~ /^[0-7]{1,4}$/ && absp($_[1]) && -f $_[1] ? chmod(oct($_[0]), $_[1]) : 0;
	}
	return 0;
}
while (defined(my $c = <$r>)) {
	chomp $c;
	my $ok = 0;
	if ($c eq "x") {
		my $n = <$r>;
		last unless defined $n && $n =~ /^([0-9]+)\n$/;
		my $k = $1;
		my @a;
		while (@a < $k) { my $l = <$r>; last unless defined $l; chomp $l; push @a, $l; }
		last if @a < $k;
		$ok = x(@a);
	} else {
		my $s = <$r>;
		my $d = <$r>;
		last unless defined $d;
		chomp($s, $d);
		$ok = $c eq "r" ? !-d $d && rename($s, $d) : $c eq "u" ? unlink($s) || !lstat($s) && $!{ENOENT} : 0;
	}
	print $w ($ok ? "0\n" : "1\n");
}
`
