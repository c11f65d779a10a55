#!/usr/bin/python3
"""A modification milter for the tests, on Debian's python3-milter (pymilter over libmilter).

What it does at end of message is chosen by the message's Subject, so one running milter serves
every test: each modification a milter can ask for, the replies, a quarantine, a hang. It also
reports what it was told (macros, header and body byte counts) in headers it adds.

Usage: mod-milter.py PORT|/unix/socket/path [noreply|reporter]
"""
import sys
import time
import hashlib
import Milter


class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ''
        self.headers = 0
        self.nbody = 0
        self.sha = hashlib.sha256()
        self.rcpts = []

    def connect(self, hostname, family, hostaddr):
        # Defined so that pymilter does not negotiate the connect stage (and its macros) away.
        self.client = '%s %s' % (hostname, hostaddr)
        return Milter.CONTINUE

    def hello(self, name):
        self.helo = name
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        self.subject = ''
        self.headers = 0
        self.nbody = 0
        self.sha = hashlib.sha256()
        self.hsha = hashlib.sha256()
        self.rcpts = []
        self.mail_args = ' '.join(args)
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        if to.lower().startswith('<blocked@'):
            self.setreply('550', '5.1.1', 'No such user here (test milter)')
            return Milter.REJECT
        if to.lower().startswith('<busy@'):
            return Milter.TEMPFAIL
        if to.lower().startswith('<trash@'):
            return Milter.DISCARD
        self.rcpts.append(to)
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers += 1
        # The bytes as sent (pymilter decodes with surrogateescape; this undoes it).
        self.hsha.update(name.encode('utf-8', 'surrogateescape') + b':' + value.encode('utf-8', 'surrogateescape') + b'\n')
        if name.lower() == 'subject':
            self.subject = value
        if name.lower() == 'x-reject-at-header':
            self.setreply('554', '5.7.1', 'Header refused (test milter)')
            return Milter.REJECT
        return Milter.CONTINUE

    def body(self, chunk):
        self.nbody += len(chunk)
        self.sha.update(chunk)
        if self.subject == 'skip':
            return Milter.SKIP
        return Milter.CONTINUE

    def eom(self):
        s = self.subject
        if REPORTER:
            # The reporter role: whatever the Subject, say what this milter was sent.
            self.addheader('X-Reporter', 'subject=%s headers=%d hsha256=%s body=%d' % (s, self.headers, self.hsha.hexdigest(), self.nbody))
            return Milter.ACCEPT
        if s == 'headers':
            self.addheader('X-Added', 'added value')
            self.addheader('X-Inserted', 'at the top', 0)
            self.chgheader('Subject', 1, 'changed subject')
            self.chgheader('X-Remove', 2, '')
            self.addheader('X-Folded', 'first line\n\tsecond line')
        elif s == 'envelope':
            self.addrcpt('<added@example.com>')
            self.delrcpt('<bob@example.com>')
            self.chgfrom('<new-sender@remote.test>')
        elif s == 'body':
            self.replacebody(b'replaced body\r\nsecond line\r\n')
        elif s == 'bigbody':
            for i in range(40):
                self.replacebody((('%04d' % i) + 'y' * 70 + '\r\n').encode() * 1000)
        elif s == 'quarantine':
            self.quarantine('test quarantine reason')
        elif s == 'reject':
            self.setreply('550', '5.7.0', 'Custom rejection by the test milter')
            return Milter.REJECT
        elif s == 'plain-reject':
            return Milter.REJECT
        elif s == 'tempfail':
            return Milter.TEMPFAIL
        elif s == 'discard':
            return Milter.DISCARD
        elif s == 'hang':
            time.sleep(60)
        elif s == 'progress':
            for _ in range(3):
                time.sleep(1.2)
                self.progress()
            self.addheader('X-Progress', 'three times')
        elif s == 'report':
            names = ['j', '{daemon_name}', 'i', '{client_addr}', '{client_name}', '{auth_authen}', '{mail_addr}', '{rcpt_addr}', 'v']
            self.addheader('X-Macros', ' '.join('%s=%s' % (n, self.getsymval(n)) for n in names))
            tls = ['{tls_version}', '{cipher}', '{cipher_bits}', '{auth_type}', '{auth_authen}']
            self.addheader('X-Session-Macros', ' '.join('%s=%s' % (n, self.getsymval(n)) for n in tls))
            self.addheader('X-Client', 'connect=%s helo=%s' % (self.client, self.helo))
            self.addheader('X-Seen', 'headers=%d hsha256=%s body=%d sha256=%s rcpts=%s args=%s' % (self.headers, self.hsha.hexdigest(), self.nbody, self.sha.hexdigest(), ','.join(self.rcpts), self.mail_args))
        elif s == 'count' or s == 'skip':
            self.addheader('X-Body-Bytes', str(self.nbody))
        return Milter.ACCEPT


class NoReplyMilter(TestMilter):
    """The same milter, negotiating "no reply" (SMFIP_NR_*) for headers, end of headers and body."""

    @Milter.noreply
    def header(self, name, value):
        return TestMilter.header(self, name, value)

    @Milter.noreply
    def eoh(self):
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk):
        return TestMilter.body(self, chunk)


REPORTER = sys.argv[2:] == ['reporter']


def main():
    where = sys.argv[1]
    Milter.factory = NoReplyMilter if sys.argv[2:] == ['noreply'] else TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM | Milter.CHGBODY | Milter.QUARANTINE)
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    spec = 'unix:%s' % where if where.startswith('/') else 'inet:%s@127.0.0.1' % where
    Milter.runmilter('portcullis-test', spec, 240)


if __name__ == '__main__':
    main()
