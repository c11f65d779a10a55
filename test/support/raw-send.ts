// Moved to the test kit (one copy for every suite): one whole transaction over a raw socket.
export { rawSend, type RawSendOptions } from '@portcullis/testkit';
