// ssh2-sftp-client (Node): a partner script's whole workflow over SFTP.
// node sftp_node.js PORT USER PASSWORD DIR (DIR holds big.bin)
const Client = require('ssh2-sftp-client');
const fs = require('fs');
const assert = require('assert');
(async () => {
  const [port, user, password, dir] = process.argv.slice(2);
  const s = new Client();
  await s.connect({ host: '127.0.0.1', port: +port, username: user, password });
  await s.mkdir('/node/in', true);
  await s.put(`${dir}/big.bin`, '/node/in/big.bin');
  const listed = (await s.list('/node/in')).map((e) => `${e.name} ${e.size}`);
  assert.deepStrictEqual(listed, [`big.bin ${fs.statSync(`${dir}/big.bin`).size}`]);
  assert.strictEqual((await s.stat('/node/in/big.bin')).size, fs.statSync(`${dir}/big.bin`).size);
  await s.fastGet('/node/in/big.bin', `${dir}/node.bin`);
  assert(fs.readFileSync(`${dir}/node.bin`).equals(fs.readFileSync(`${dir}/big.bin`)));
  await s.rename('/node/in/big.bin', '/node/in/renamed.bin');
  await s.put(Buffer.from('old'), '/node/in/small.txt');
  await s.put(Buffer.from('overwritten'), '/node/in/small.txt');
  await s.append(Buffer.from('+appended'), '/node/in/small.txt');
  assert.strictEqual((await s.get('/node/in/small.txt')).toString(), 'overwritten+appended');
  await s.delete('/node/in/renamed.bin');
  await s.delete('/node/in/small.txt');
  await s.rmdir('/node', true);
  await s.end();
  console.log('ssh2-sftp-client: ok');
})().catch((e) => { console.error('ssh2-sftp-client:', e); process.exit(1); });
