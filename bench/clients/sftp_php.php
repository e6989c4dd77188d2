<?php
// phpseclib3 (Debian php-phpseclib3): a partner script's whole workflow over SFTP.
// php sftp_php.php PORT USER PASSWORD DIR (DIR holds big.bin)
require '/usr/share/php/phpseclib3/autoload.php';
use phpseclib3\Net\SFTP;
[, $port, $user, $password, $dir] = $argv;
function check($ok, $what) { if (!$ok) { fwrite(STDERR, "phpseclib3: $what\n"); exit(1); } }
$s = new SFTP('127.0.0.1', (int) $port);
check($s->login($user, $password), 'login');
check($s->mkdir('/php/in', -1, true), 'mkdir');
check($s->put('/php/in/big.bin', "$dir/big.bin", SFTP::SOURCE_LOCAL_FILE), 'put');
$size = filesize("$dir/big.bin");
check($s->filesize('/php/in/big.bin') === $size, 'size');
check($s->nlist('/php/in') == ['.', '..', 'big.bin'] || $s->nlist('/php/in') == ['big.bin'], 'nlist ' . json_encode($s->nlist('/php/in')));
check($s->get('/php/in/big.bin', "$dir/php.bin"), 'get');
check(md5_file("$dir/php.bin") === md5_file("$dir/big.bin"), 'bytes');
check($s->rename('/php/in/big.bin', '/php/in/renamed.bin'), 'rename');
check($s->put('/php/in/small.txt', 'old'), 'put small');
check($s->put('/php/in/small.txt', 'overwritten'), 'overwrite');
check($s->put('/php/in/small.txt', '+appended', SFTP::RESUME), 'append');
check($s->get('/php/in/small.txt') === 'overwritten+appended', 'appended: ' . $s->get('/php/in/small.txt'));
check($s->delete('/php/in/renamed.bin'), 'delete');
check($s->delete('/php', true), 'delete tree');
echo "phpseclib3: ok\n";
