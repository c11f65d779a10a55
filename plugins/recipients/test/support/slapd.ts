import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connects, TestDaemon, type DaemonSpec } from '@portcullis/testkit';

const SLAPD = '/usr/sbin/slapd';
const SLAPADD = '/usr/sbin/slapadd';

/**
 * A test schema for Exchange-style `proxyAddresses` (`smtp:alias@domain`, `SMTP:primary@domain`):
 * case-insensitive equality, as Active Directory matches it. The OID arc is the IANA example arc.
 */
const TEST_SCHEMA = `
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'proxyAddresses'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'mailRecipient' SUP top AUXILIARY
  MAY ( proxyAddresses ) )
`;

/** TLS for slapd: its key and certificate, an ldaps:// port, and whether a simple bind needs TLS. */
export interface SlapdTls {
  readonly key: string;
  readonly cert: string;
  readonly ldapsPort: number;
  /** `security simple_bind=128`: a bind without TLS is refused (confidentiality required). */
  readonly requireTlsForBind?: boolean;
}

export interface SlapdUser {
  readonly uid: string;
  readonly mail: string;
  readonly proxyAddresses?: readonly string[];
}

/**
 * Debian's slapd (OpenLDAP) on 127.0.0.1 and a free port, with a config and an mdb database the test
 * writes into a temp folder and fills with slapadd. Its log (`-d 256`: connections, binds and every
 * search filter as slapd parsed it) is kept in `log`, so tests can count queries and read filters.
 */
export class Slapd extends TestDaemon {
  /** slapd's output over all its starts (a restart keeps what came before). */
  log = '';
  readonly suffix = 'dc=hosted,dc=example';
  readonly bindDn = 'cn=relay,dc=hosted,dc=example';
  readonly password = 'relay-secret';
  private constructor(readonly port: number, readonly tls?: SlapdTls) {
    super('portcullis-slapd-');
  }

  static async start(port: number, users: readonly SlapdUser[], tls?: SlapdTls): Promise<Slapd> {
    if (!existsSync(SLAPD) || !existsSync(SLAPADD)) throw new Error('slapd not found: install Debian\'s slapd and ldap-utils (scripts/system-deps.sh)');
    const s = new Slapd(port, tls);
    s.write(users);
    await s.launch();
    return s;
  }

  get url(): string {
    return `ldap://127.0.0.1:${this.port}`;
  }

  private write(users: readonly SlapdUser[]): void {
    mkdirSync(path.join(this.dir, 'db'));
    writeFileSync(path.join(this.dir, 'test.schema'), TEST_SCHEMA);
    writeFileSync(path.join(this.dir, 'password'), this.password + '\n');
    writeFileSync(
      path.join(this.dir, 'slapd.conf'),
      [
        'include /etc/ldap/schema/core.schema',
        'include /etc/ldap/schema/cosine.schema',
        'include /etc/ldap/schema/inetorgperson.schema',
        `include ${path.join(this.dir, 'test.schema')}`,
        'modulepath /usr/lib/ldap',
        'moduleload back_mdb',
        `pidfile ${path.join(this.dir, 'slapd.pid')}`,
        ...(this.tls ? [`TLSCertificateFile ${this.tls.cert}`, `TLSCertificateKeyFile ${this.tls.key}`] : []),
        ...(this.tls?.requireTlsForBind ? ['security simple_bind=128'] : []),
        'database mdb',
        `suffix "${this.suffix}"`,
        `rootdn "cn=admin,${this.suffix}"`,
        'rootpw admin-secret',
        `directory ${path.join(this.dir, 'db')}`,
        'maxsize 10485760',
        'index mail eq',
        'index proxyAddresses eq',
        // The relay's service account may read; anonymous may only bind.
        `access to attrs=userPassword by self write by anonymous auth by * none`,
        `access to * by dn.exact="${this.bindDn}" read by * none`,
        '',
      ].join('\n'),
    );
    const entries = [
      `dn: ${this.suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: hosted\no: Hosted\n`,
      `dn: cn=relay,${this.suffix}\nobjectClass: person\ncn: relay\nsn: relay\nuserPassword: ${this.password}\n`,
      `dn: ou=people,${this.suffix}\nobjectClass: organizationalUnit\nou: people\n`,
      ...users.map((u) => [`dn: uid=${u.uid},ou=people,${this.suffix}`, 'objectClass: inetOrgPerson', 'objectClass: mailRecipient', `uid: ${u.uid}`, `cn: ${u.uid}`, `sn: ${u.uid}`, `mail: ${u.mail}`, ...(u.proxyAddresses ?? []).map((p) => `proxyAddresses: ${p}`), ''].join('\n')),
    ];
    writeFileSync(path.join(this.dir, 'data.ldif'), entries.join('\n'));
    const r = spawnSync(SLAPADD, ['-f', path.join(this.dir, 'slapd.conf'), '-l', path.join(this.dir, 'data.ldif')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`slapadd failed: ${r.stderr}`);
  }

  protected spec(): DaemonSpec {
    // -d 256: stats logging to stderr (and slapd stays in the foreground).
    return {
      name: 'slapd',
      command: SLAPD,
      args: ['-f', path.join(this.dir, 'slapd.conf'), '-h', `ldap://127.0.0.1:${this.port}/${this.tls ? ` ldaps://127.0.0.1:${this.tls.ldapsPort}/` : ''}`, '-d', '256'],
      onOutput: (text) => (this.log += text),
      ready: () => connects(this.port),
      readyMs: 15_000,
      pollMs: 50,
    };
  }

  /** Search filters slapd received, as it logged them (`SRCH ... filter="..."` lines). */
  filters(): string[] {
    return [...this.log.matchAll(/ filter="(.*)"$/gm)].map((m) => m[1]!);
  }

  /** Number of SRCH operations slapd has logged so far. */
  searches(): number {
    return (this.log.match(/ SRCH base=/g) ?? []).length;
  }

  get passwordFile(): string {
    return path.join(this.dir, 'password');
  }

  /** Stops slapd and removes its folder (`stop()` keeps the database for a restart). */
  remove(): Promise<void> {
    return this.close();
  }

  readFile(name: string): string {
    return readFileSync(path.join(this.dir, name), 'utf8');
  }
}
