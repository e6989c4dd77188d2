// basic-ftp (Node) over explicit FTPS: a partner script's whole workflow.
// node ftp_node.js PORT USER PASSWORD DIR (DIR holds big.bin)
const ftp = require('basic-ftp');
const fs = require('fs');
const { Readable } = require('stream');
const assert = require('assert');
(async () => {
  const [port, user, password, dir] = process.argv.slice(2);
  const c = new ftp.Client();
  await c.access({ host: '127.0.0.1', port: +port, user, password, secure: true,
                   secureOptions: { rejectUnauthorized: false } });
  await c.ensureDir('/bftp/in');
  await c.uploadFrom(`${dir}/big.bin`, 'big.bin');
  const size = fs.statSync(`${dir}/big.bin`).size;
  assert.deepStrictEqual((await c.list()).map((e) => `${e.name} ${e.size}`), [`big.bin ${size}`]);
  assert.strictEqual(await c.size('big.bin'), size);
  await c.downloadTo(`${dir}/bftp.bin`, 'big.bin');
  assert(fs.readFileSync(`${dir}/bftp.bin`).equals(fs.readFileSync(`${dir}/big.bin`)));
  await c.rename('big.bin', 'renamed.bin');
  await c.uploadFrom(Readable.from([Buffer.from('old')]), 'small.txt');
  await c.uploadFrom(Readable.from([Buffer.from('overwritten')]), 'small.txt');
  await c.appendFrom(Readable.from([Buffer.from('+appended')]), 'small.txt');
  assert.strictEqual(await c.size('small.txt'), 'overwritten+appended'.length);
  // Resume a download that has its first 4 bytes (REST 4).
  fs.writeFileSync(`${dir}/part.txt`, 'over');
  await c.downloadTo(`${dir}/part.txt`, 'small.txt', 4);
  assert.strictEqual(fs.readFileSync(`${dir}/part.txt`).toString(), 'overwritten+appended');
  await c.remove('renamed.bin');
  await c.remove('small.txt');
  await c.cd('/');
  await c.removeDir('/bftp');
  c.close();
  console.log('basic-ftp: ok');
})().catch((e) => { console.error('basic-ftp:', e); process.exit(1); });
