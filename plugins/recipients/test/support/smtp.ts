// Moved to the test kit (one copy for every suite): one session, one RCPT per address.
export { rcptReplies, rcptReply } from '@portcullis/testkit';
