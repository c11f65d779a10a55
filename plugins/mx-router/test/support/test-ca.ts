import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A certificate authority of the test's own, made with the openssl command line tool (Debian's
 * openssl): the relay is told to trust it through configuration (`mtaSts.ca`), like an operator
 * pointing at a private CA. Nothing here is installed in the system trust store.
 */
export class TestCa {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-ca-'));
  readonly caFile = path.join(this.dir, 'ca.pem');
  private readonly caKey = path.join(this.dir, 'ca.key');
  private serial = 1;

  constructor() {
    this.openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', this.caKey, '-out', this.caFile, '-days', '2', '-subj', '/CN=Portcullis Test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }

  get caPem(): string {
    return readFileSync(this.caFile, 'utf8');
  }

  /** A key and a certificate signed by this CA for `names` (subjectAltName DNS entries). */
  issue(names: readonly string[]): { key: string; cert: string } {
    const n = this.serial++;
    const key = path.join(this.dir, `leaf${n}.key`);
    const csr = path.join(this.dir, `leaf${n}.csr`);
    const cert = path.join(this.dir, `leaf${n}.pem`);
    const ext = path.join(this.dir, `leaf${n}.ext`);
    writeFileSync(ext, `subjectAltName=${names.map((d) => `DNS:${d}`).join(',')}\nextendedKeyUsage=serverAuth\n`);
    this.openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${names[0]}`]);
    this.openssl(['x509', '-req', '-in', csr, '-CA', this.caFile, '-CAkey', this.caKey, '-set_serial', String(1000 + n), '-days', '2', '-out', cert, '-extfile', ext]);
    return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
  }

  /** A self-signed certificate for `name`: valid in form, trusted by nobody. */
  selfSigned(name: string): { key: string; cert: string } {
    const n = this.serial++;
    const key = path.join(this.dir, `self${n}.key`);
    const cert = path.join(this.dir, `self${n}.pem`);
    this.openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`]);
    return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }
}
