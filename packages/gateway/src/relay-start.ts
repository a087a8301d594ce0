/**
 * The relay's starter, for images that have Perl (the bundled agent image does: its base is Debian,
 * where perl-base is part of every system). Node takes some 25 ms to start and the relay more; Perl
 * takes 2. The starter does at once what must come before the command: it listens on the relay's
 * loopback ports. Then it runs the command without waiting, and starts the relay (relay.ts) only
 * when the first connection is waiting, handing it those sockets: a connection made before the
 * relay is up waits in the socket's queue, as one made before the gateway is up waits in the relay.
 * A command that makes no connection never shares the machine with Node's start.
 *
 * What the relay does as the command's parent, the starter does here instead: it passes the
 * command's exit code on (128 + the signal's number for a command killed by one), forwards the
 * signals a container gets (SIGINT only without a terminal, whose Ctrl-C reaches the command
 * itself), and tells the gateway on the run's end socket once the command has ended.
 *
 * The relay is started in a session of its own with no terminal, and left to the container's init
 * (two forks), so that the command neither waits for it nor sees it as a child; the command inherits
 * no listening socket. Runs whose command must wait for the gateway (RelayConfig's `waitForGateway`)
 * or that publish ports start with the relay itself (bottleBootstrap).
 *
 * Arguments: the relay's file, its configuration (JSON), the end socket's path, the ports to listen
 * on (comma-separated), then the command. Only perl-base's modules (Socket, POSIX) are used.
 */
export const relayStarter = String.raw`
use strict;
use Socket;
use POSIX ();

my ($relay, $config, $end, $ports, @command) = @ARGV;
sub fail { print STDERR "claude-bottle: $_[0]\n"; exit $_[1] }

# Sockets made while $^F is high stay open across exec: the relay's.
$^F = 1023;
my (@listening, @fds);
for my $port (split /,/, $ports) {
  my $socket;
  (socket($socket, PF_INET, SOCK_STREAM, 0)
    && setsockopt($socket, SOL_SOCKET, SO_REUSEADDR, 1)
    && bind($socket, pack_sockaddr_in($port, inet_aton("127.0.0.1")))
    && listen($socket, SOMAXCONN))
    or fail("the bottle's network relay could not listen on 127.0.0.1:$port: $!", 125);
  push @listening, $socket;
  push @fds, "\"$port\":" . fileno($socket);
}
$^F = 2;
my $handed = join(",", @fds);
$config =~ s/\}\s*\z/,"listenFds":{$handed}}/;

# The relay, in a session of its own with no terminal, left to the container's init (two forks).
sub start_relay {
  my $first = fork;
  defined $first or fail("cannot start the bottle's network relay: $!", 125);
  if ($first == 0) {
    POSIX::setsid();
    open STDIN, "<", "/dev/null";
    open STDOUT, ">", "/dev/null";
    my $second = fork;
    if (defined $second && $second == 0) {
      { exec "node", $relay, $config };
      print STDERR "claude-bottle: cannot start the bottle's network relay: node: $!\n";
    }
    POSIX::_exit(0);
  }
  waitpid $first, 0;
  close $_ for @listening;
  @listening = ();
}

my $child;
my $terminal = -t STDIN;
for my $signal (qw(TERM HUP QUIT USR1 USR2 INT)) {
  $SIG{$signal} = sub { kill $signal, $child if $child && !($terminal && $signal eq "INT") };
}
$child = fork;
defined $child or fail("$command[0]: $!", 126);
if ($child == 0) {
  close $_ for @listening;
  $SIG{$_} = "DEFAULT" for qw(TERM HUP QUIT USR1 USR2 INT);
  { exec { $command[0] } @command };
  my $missing = $!{ENOENT};
  print STDERR "claude-bottle: $command[0]: ", ($missing ? "command not found" : "$!"), "\n";
  POSIX::_exit($missing ? 127 : 126);
}

# Node starts only once the first connection is waiting: a command that makes none never shares
# the machine with it, and one that does (Claude Code, well after its own start) finds its
# connection taken a few tens of milliseconds later. The timeout only guards against a command
# that ends between the check and the wait.
my $ended;
$SIG{CHLD} = sub {};
while (@listening) {
  my $got = waitpid($child, POSIX::WNOHANG());
  if ($got == $child) { $ended = 1; last }
  my $waiting = "";
  vec($waiting, fileno($_), 1) = 1 for @listening;
  start_relay() if select($waiting, undef, undef, 0.25) > 0;
}
$SIG{CHLD} = "DEFAULT";
if (!$ended) { 1 while waitpid($child, 0) == -1 && $!{EINTR} }
my $status = POSIX::WIFEXITED($?) ? POSIX::WEXITSTATUS($?) : 128 + POSIX::WTERMSIG($?);

# The gateway stops this run's services while the engine removes the container, not after.
my $told;
socket($told, PF_UNIX, SOCK_STREAM, 0) and connect($told, pack_sockaddr_un($end));
exit $status;
`;
